/* The floor for a proxy on this machine: a bare TCP relay that parses nothing, decides nothing
 * and records nothing. It listens on 127.0.0.1:PORT and joins each client to the origin at
 * 127.0.0.1:TARGET, moving bytes both ways with splice(2) through a pipe, one thread a
 * direction, blocking calls.
 *
 *   cc -O2 -pthread -o splice_relay bench/splice_relay.c && ./splice_relay PORT TARGET
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn { int client, upstream, running; };
struct pair { int from, to; struct conn *conn; };

static void *pump(void *arg) {
    struct pair p = *(struct pair *)arg;
    free(arg);
    int pipefd[2];
    if (pipe(pipefd) == 0) {
        for (;;) {
            ssize_t n = splice(p.from, NULL, pipefd[1], NULL, 1 << 16, SPLICE_F_MOVE);
            if (n <= 0) break;
            while (n > 0) {
                ssize_t m = splice(pipefd[0], NULL, p.to, NULL, n, SPLICE_F_MOVE);
                if (m <= 0) goto done;
                n -= m;
            }
        }
    done:
        close(pipefd[0]);
        close(pipefd[1]);
    }
    shutdown(p.to, SHUT_WR);
    shutdown(p.from, SHUT_RD);
    if (__atomic_sub_fetch(&p.conn->running, 1, __ATOMIC_ACQ_REL) == 0) {
        close(p.conn->client);
        close(p.conn->upstream);
        free(p.conn);
    }
    return NULL;
}

static void start(int from, int to, struct conn *conn) {
    struct pair *p = malloc(sizeof *p);
    p->from = from;
    p->to = to;
    p->conn = conn;
    pthread_t t;
    pthread_create(&t, NULL, pump, p);
    pthread_detach(t);
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: splice_relay PORT TARGET\n"); return 2; }
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write ends its connection, not the relay */
    struct sockaddr_in listen_at = loopback(atoi(argv[1])), origin = loopback(atoi(argv[2]));
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&listen_at, sizeof listen_at) || listen(l, 1024)) { perror("listen"); return 1; }
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        int u = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(u, (struct sockaddr *)&origin, sizeof origin)) { close(c); close(u); continue; }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *conn = malloc(sizeof *conn);
        conn->client = c;
        conn->upstream = u;
        conn->running = 2;
        start(c, u, conn);
        start(u, c, conn);
    }
}
