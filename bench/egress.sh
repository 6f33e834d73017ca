#!/usr/bin/env bash
# Egress proxy and resolver throughput beside the peers, on loopback, in one run, all with the
# same allow-list (one origin, 127.0.0.1:18080): direct to the origin, portcullis, squid and
# tinyproxy, and the floor for any proxy here: a bare splice relay (`bench/splice_relay.c`, no
# parsing, no policy, no records), built by this script. HTTP with wrk (absolute-form requests
# through each proxy, kept alive), 1 KiB at 10 connections and 10 MiB at 1; DNS with dnsperf
# against `portcullis proxy --dns`, and dnsmasq with the same local answers for scale.
# PORTCULLIS_BEFORE=PATH adds an older `portcullis` binary's proxy to the same rounds.
# Target: portcullis >= 0.9 of the relay in both HTTP tests.
#
#   bench/egress.sh [SECONDS]   (default 10 per measurement; three rounds of each)
#   needs: apt-get install -y wrk dnsperf squid tinyproxy nginx-light dnsmasq-base
set -euo pipefail
secs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in wrk dnsperf squid tinyproxy nginx dnsmasq; do
  command -v "$tool" >/dev/null || { echo "bench/egress.sh: $tool is missing (apt-get install -y wrk dnsperf squid tinyproxy nginx-light dnsmasq-base)" >&2; exit 2; }
done
. "$root/bench/lib.sh"
bin=$(release_binary -p portcullis --manifest-path "$root/Cargo.toml")
before=${PORTCULLIS_BEFORE:-}
work=$(mktemp -d /tmp/portcullis-egress.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
# The servers drop to their own users: they must be able to read (and squid to log) here.
chmod 755 "$work"

# The origin: nginx serving a 1 KiB and a 10 MiB file.
mkdir -p www logs
head -c 1024 /dev/urandom > www/1k
head -c $((10 << 20)) /dev/urandom > www/10m
chmod -R a+rX www
cat > nginx.conf <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:18080; root $work/www; }
}
EOF
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)

# portcullis: the proxy and the resolver, allowing the origin (and its name for DNS).
cat > policy.toml <<'EOF'
[network]
allow = ["127.0.0.1:18080", "localhost"]
allow_cidrs = ["127.0.0.0/8"]
[guards]
EOF
PORTCULLIS_STATE_DIR="$work/state" "$bin" proxy --policy policy.toml --listen 127.0.0.1:13128 --dns 127.0.0.1:15353 2>portcullis.log & pids+=($!)
if [ -n "$before" ]; then
  PORTCULLIS_STATE_DIR="$work/state-before" "$before" proxy --policy policy.toml --listen 127.0.0.1:13132 2>before.log & pids+=($!)
fi

# The bare relay: every connection joined to the origin.
cc -O2 -pthread -o splice_relay "$root/bench/splice_relay.c"
./splice_relay 13131 18080 & pids+=($!)

# squid: only the origin.
cat > squid.conf <<EOF
http_port 127.0.0.1:13129
acl origin dst 127.0.0.1/32
acl origin_port port 18080
http_access allow origin origin_port
http_access deny all
cache deny all
access_log none
cache_log /dev/null
pid_filename $work/squid.pid
coredump_dir $work
shutdown_lifetime 0 seconds
EOF
squid -N -f squid.conf 2>logs/squid.log & pids+=($!)

# tinyproxy: only the origin, through its filter.
echo '^127\.0\.0\.1$' > tinyproxy.filter
cat > tinyproxy.conf <<EOF
Port 13130
Listen 127.0.0.1
Timeout 600
MaxClients 200
Allow 127.0.0.1
Filter "$work/tinyproxy.filter"
FilterDefaultDeny Yes
LogLevel Critical
EOF
tinyproxy -d -c tinyproxy.conf >logs/tinyproxy.log 2>&1 & pids+=($!)

# dnsmasq with the same local answer, no upstream.
dnsmasq --no-daemon --port=15354 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --address=/localhost/127.0.0.1 --cache-size=1000 --log-facility=/dev/null 2>logs/dnsmasq.log & pids+=($!)
sleep 1.5

# wrk sends absolute-form requests to a proxy when the path is a whole URL.
printf 'wrk.path = "http://127.0.0.1:18080/%s"\n' 1k > 1k.lua
printf 'wrk.path = "http://127.0.0.1:18080/%s"\n' 10m > 10m.lua
check() { curl -s -o /dev/null -w '%{http_code}' ${1:+-x "$1"} http://127.0.0.1:18080/1k; }
for p in "" http://127.0.0.1:13128 http://127.0.0.1:13129 http://127.0.0.1:13130 http://127.0.0.1:13131 ${before:+http://127.0.0.1:13132}; do
  code=$(check "$p"); [ "$code" = 200 ] || { echo "bench/egress.sh: ${p:-direct} answered $code" >&2; cat logs/* portcullis.log >&2; exit 1; }
done
denied=$(curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:13128 http://127.0.0.2:18080/1k)
[ "$denied" = 403 ] || { echo "bench/egress.sh: portcullis let a destination outside the allow-list through ($denied)" >&2; exit 1; }

rps() { wrk -t1 -c10 -d"${secs}s" ${2:+-s "$2"} "$1" | awk '/Requests\/sec/ {print $2}'; }
mibs() {
  wrk -t1 -c1 -d"${secs}s" ${2:+-s "$2"} "$1" | awk '/Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2); if (u=="GB") n*=1024; if (u=="KB") n/=1024; print n}'
}
# Three rounds, each measuring every variant once in turn, so drift hits them alike; the
# report gives each variant's median and the median of the per-round ratios to direct.
rounds=3
declare -A small big
for ((r = 0; r < rounds; r++)); do
  small[direct]+="$(rps http://127.0.0.1:18080/1k) "
  small[portcullis]+="$(rps http://127.0.0.1:13128 1k.lua) "
  small[squid]+="$(rps http://127.0.0.1:13129 1k.lua) "
  small[tinyproxy]+="$(rps http://127.0.0.1:13130 1k.lua) "
  small[relay]+="$(rps http://127.0.0.1:13131 1k.lua) "
  [ -z "$before" ] || small[before]+="$(rps http://127.0.0.1:13132 1k.lua) "
  big[direct]+="$(mibs http://127.0.0.1:18080/10m) "
  big[portcullis]+="$(mibs http://127.0.0.1:13128 10m.lua) "
  big[squid]+="$(mibs http://127.0.0.1:13129 10m.lua) "
  big[tinyproxy]+="$(mibs http://127.0.0.1:13130 10m.lua) "
  big[relay]+="$(mibs http://127.0.0.1:13131 10m.lua) "
  [ -z "$before" ] || big[before]+="$(mibs http://127.0.0.1:13132 10m.lua) "
done

# DNS: the same allowed name, 100 queries outstanding.
for i in $(seq 1000); do echo "localhost A"; done > queries.txt
qps() { dnsperf -s 127.0.0.1 -p "$1" -d queries.txt -l "$secs" -q 100 -c 4 2>/dev/null | awk '/Queries per second/ {print $4}'; }
dns_portcullis=$(qps 15353)
dns_dnsmasq=$(qps 15354)

python3 - "${small[direct]}" "${small[portcullis]}" "${small[squid]}" "${small[tinyproxy]}" \
  "${big[direct]}" "${big[portcullis]}" "${big[squid]}" "${big[tinyproxy]}" "$dns_portcullis" "$dns_dnsmasq" \
  "${small[relay]}" "${big[relay]}" "${small[before]:-}" "${big[before]:-}" <<'PY'
import statistics as st, sys
runs = [[float(x) for x in a.split()] for a in sys.argv[1:9]]
d, p, s, t, bd, bp, bs, bt = runs
qp, qd = float(sys.argv[9] or 0), float(sys.argv[10] or 0)
rl, brl = [[float(x) for x in a.split()] for a in sys.argv[11:13]]
old, bold = [[float(x) for x in a.split()] for a in sys.argv[13:15]]
m = st.median
r = lambda a, b: m([x / y for x, y in zip(a, b)])
print(f"against the bare splice relay (target >= 0.9): 1 KiB portcullis {r(p, rl):.2f} of relay (relay {m(rl):.0f} req/s); "
      f"10 MiB {r(bp, brl):.2f} of relay (relay {m(brl):.0f} MiB/s)")
if old:
    print(f"before (PORTCULLIS_BEFORE): 1 KiB {m(old):.0f} req/s = {r(old, rl):.2f} of relay; "
          f"10 MiB {m(bold):.0f} MiB/s = {r(bold, brl):.2f} of relay")
print(f"1 KiB, 10 connections (req/s):   direct {m(d):9.0f}   portcullis {m(p):9.0f} ({r(p, d):.2f} of direct, {r(p, s):.1f}x squid; target >= 0.5 and >= 3x)")
print(f"                                 squid  {m(s):9.0f} ({r(s, d):.2f})   tinyproxy {m(t):9.0f} ({r(t, d):.2f})")
print(f"10 MiB, 1 connection (MiB/s):    direct {m(bd):9.0f}   portcullis {m(bp):9.0f} ({r(bp, bd):.2f} of direct; target >= 0.8)")
print(f"                                 squid  {m(bs):9.0f} ({r(bs, bd):.2f})   tinyproxy {m(bt):9.0f} ({r(bt, bd):.2f})")
print(f"DNS, allowed name (answers/s):   portcullis {qp:9.0f} (target >= 100000)   dnsmasq {qd:9.0f}")
PY
