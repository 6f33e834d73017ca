/* The disk's limit for bench/audit.sh: append N records of SIZE bytes, one write(2) each,
 * with fdatasync(2) after every BATCH records (BATCH 0: never). Prints records/s. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: raw_append FILE N SIZE BATCH\n");
        return 2;
    }
    long n = atol(argv[2]), size = atol(argv[3]), batch = atol(argv[4]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0) { perror("open"); return 1; }
    char *rec = malloc(size);
    memset(rec, 'x', size);
    rec[size - 1] = '\n';
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (write(fd, rec, size) != size) { perror("write"); return 1; }
        if (batch > 0 && (i + 1) % batch == 0 && fdatasync(fd) != 0) { perror("fdatasync"); return 1; }
    }
    if (fdatasync(fd) != 0) { perror("fdatasync"); return 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.0f\n", n / secs);
    return 0;
}
