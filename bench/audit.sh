#!/usr/bin/env bash
# The audit store beside the disk's own limit, in one run on one filesystem:
#   raw      a C loop appending 200-byte records, one write(2) each, fdatasync per batch
#   raw_nosync  the same loop without fdatasync
#   append   the store's group commit (durable within 10 ms), records of about 200 bytes
#   verify   `audit verify`'s checker over what `append` wrote
#   trail    a session's own path: allowed exec records through its log (the folding of repeated
#            refusals and the record budget in front of the store), beside the same records
#            appended to the store directly (`direct`), in one process, best of three each
#   before   with PORTCULLIS_BEFORE_AUDIT_BENCH=PATH, an older build of the `audit_bench` example,
#            run in the same round (an append-rate comparison across versions)
# Targets: append >= 0.5 of raw; verify >= 1M records/s; trail >= 0.95 of direct.
# Usage: bench/audit.sh [RECORDS] [BATCH] [DIR]   (defaults 1000000, 1000, a directory under /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
batch=${2:-1000}
dir=${3:-$(mktemp -d /var/tmp/portcullis-audit-bench.XXXXXX)}
cc -O2 -o "$dir/raw_append" bench/raw_append.c
. bench/lib.sh
bin=$(release_binary -p portcullis-audit --example audit_bench)
trail_bin=$(release_binary -p portcullis-harness --example trail_bench)
before=${PORTCULLIS_BEFORE_AUDIT_BENCH:-}
for round in 1 2 3; do
    rm -rf "$dir/store" "$dir/raw.jsonl" && mkdir -p "$dir/store"
    raw=$("$dir/raw_append" "$dir/raw.jsonl" "$n" 200 "$batch")
    nosync=$("$dir/raw_append" "$dir/raw.jsonl" "$n" 200 0)
    out=$("$bin" "$dir/store" "$n")
    append=$(awk '/^append/ {print $2}' <<<"$out")
    verify=$(awk '/^verify/ {print $2}' <<<"$out")
    size=$(awk '/^bytes_per_record/ {print $2}' <<<"$out")
    printf 'round %d: raw %s/s (batch %s), raw without sync %s/s, append %s/s (%s B/record) = %.2f of raw, verify %s/s\n' \
        "$round" "$raw" "$batch" "$nosync" "$append" "$size" "$(echo "$append / $raw" | bc -l)" "$verify"
    if [ -n "$before" ]; then
        rm -rf "$dir/store" && mkdir -p "$dir/store"
        old=$(awk '/^append/ {print $2}' <<<"$("$before" "$dir/store" "$n")")
        printf '         before: append %s/s; this build %s/s = %.3f of before\n' "$old" "$append" "$(echo "$append / $old" | bc -l)"
    fi
    rm -rf "$dir/store" && mkdir -p "$dir/store"
    out=$("$trail_bin" "$dir/store" "$n")
    direct=$(awk '/^direct/ {print $2}' <<<"$out")
    trail=$(awk '/^trail/ {print $2}' <<<"$out")
    printf '         trail %s/s, direct %s/s = %.3f of direct\n' "$trail" "$direct" "$(echo "$trail / $direct" | bc -l)"
done
rm -rf "$dir"
