#!/usr/bin/env bash
# Start-up cost of `portcullis run` beside bubblewrap with the equivalent profile, and the exec
# monitor's cost per exec inside a running session. Paired: every round runs each variant once,
# in turn, so machine noise hits them alike; the report gives medians of per-round ratios.
#
#   bench/spawn.sh [ROUNDS]        (default 200; needs bubblewrap: apt-get install -y bubblewrap)
#
# PORTCULLIS_BEFORE=/path/to/an/older/portcullis adds that binary's start-up and execs to the
# same paired rounds, for a before-and-after in one run.
set -euo pipefail
rounds=${1:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v bwrap >/dev/null || { echo "bench/spawn.sh: bubblewrap is not installed (apt-get install -y bubblewrap)" >&2; exit 2; }
. "$root/bench/lib.sh"
bin=$(release_binary -p portcullis --manifest-path "$root/Cargo.toml")
before=${PORTCULLIS_BEFORE:-}

base=$(mktemp -d /tmp/portcullis-spawn.XXXXXX)
trap 'rm -rf "$base"' EXIT
mkdir -p "$base/work" "$base/home/.ssh" "$base/state"
export HOME="$base/home" PORTCULLIS_STATE_DIR="$base/state"
cd "$base/work"

bare() { /bin/true; }
bwrap_true() {
  bwrap --ro-bind / / --bind "$base/work" "$base/work" --tmpfs "$base/home/.ssh" \
    --unshare-net --unshare-pid --die-with-parent /bin/true
}
# For scale, not for the targets: bubblewrap building the root portcullis builds (system
# directories read-only, its own /proc, /dev and /tmp, the workdir bound, home empty) in all of
# its namespaces, in a new session, without capabilities. It still does no Landlock, seccomp,
# exec monitor, cgroup, audit record or egress proxy.
same_root=()
for d in /usr /bin /sbin /lib /lib32 /lib64 /libx32 /etc /opt; do
  if [ -L "$d" ]; then same_root+=(--symlink "$(readlink "$d")" "$d")
  elif [ -d "$d" ]; then same_root+=(--ro-bind "$d" "$d"); fi
done
same_root+=(--proc /proc --dev /dev --tmpfs /tmp --bind "$base/work" "$base/work" --tmpfs "$base/home"
  --unshare-all --new-session --cap-drop ALL --die-with-parent --chdir "$base/work")
bwrap_same_root() { bwrap "${same_root[@]}" /bin/true; }
pc_through() { "$bin" run -q --no-ephemeral -- /bin/true; }
pc_overlay() { "$bin" run -q -- /bin/true; }
pc_through_before() { "$before" run -q --no-ephemeral -- /bin/true; }
# The same without a cgroup, to show what the cgroup v1 move costs on this host.
pc_no_cgroup() { PORTCULLIS_SIMULATE_MISSING=cgroups "$bin" run -q --dangerously-allow-partial-sandbox=cgroups --no-ephemeral -- /bin/true; }
# Born in a cgroup v2 cgroup (CLONE_INTO_CGROUP), as on a v2 host; no memory or process limit
# (said explicitly: unset, they take finite defaults), since this host's v2 hierarchy may offer
# no controllers.
printf '[limits]\nwall_clock = "1m"\nmemory = "unlimited"\nprocesses = "unlimited"\n' > "$base/v2.toml"
pc_v2() { PORTCULLIS_CGROUP=v2 "$bin" run -q --policy "$base/v2.toml" --no-ephemeral -- /bin/true; }

# Microseconds one call of "$1" takes.
time_us() {
  local t0=$EPOCHREALTIME
  "$1" >/dev/null 2>&1
  local t1=$EPOCHREALTIME
  echo $(( (${t1/./} - ${t0/./}) ))
}

variants=(bare bwrap_true bwrap_same_root pc_through pc_overlay pc_no_cgroup)
[ -n "$before" ] && variants+=(pc_through_before)
grep -q ' cgroup2 ' /proc/self/mounts && [ "$(id -u)" = 0 ] && variants+=(pc_v2)
for v in "${variants[@]}"; do "$v" >/dev/null 2>&1 || { echo "bench/spawn.sh: $v failed" >&2; "$v"; exit 1; }; done
declare -A samples
n=${#variants[@]}
for ((i = 0; i < rounds; i++)); do
  # A new random order each round: a cgroup v1 move is cheap right after another one (the
  # kernel's migration lock stays in its fast state for one RCU grace period), so no variant may
  # always follow another.
  order=("${variants[@]}")
  for ((j = n - 1; j > 0; j--)); do
    k=$((RANDOM % (j + 1))); t=${order[j]}; order[j]=${order[k]}; order[k]=$t
  done
  for v in "${order[@]}"; do samples[$v]+="$(time_us "$v") "; done
  rm -rf "$base/state/sessions"
  sleep 0.05
done

# The exec monitor: N execs in one shell, inside a session and outside: of /bin/true (a system
# program), of a program built in the workdir (which the monitor identifies as a writable file
# and looks up among the system executables), and of a copy of /bin/true there.
execs=500
loop() { echo "i=0; t0=\$(date +%s%N); while [ \$i -lt $execs ]; do $1; i=\$((i+1)); done; t1=\$(date +%s%N); echo \$(( (t1 - t0) / $execs / 1000 ))"; }
printf 'int main(void) { return 0; }\n' | gcc -x c -O2 -o "$base/work/built" -
cp /bin/true "$base/work/copy"
exec_in=""; exec_out=""; exec_built=""; exec_copy=""; exec_in_before=""; exec_built_before=""
for ((i = 0; i < 10; i++)); do
  exec_out+="$(sh -c "$(loop /bin/true)") "
  exec_in+="$("$bin" run -q --no-ephemeral -- /bin/sh -c "$(loop /bin/true)") "
  exec_built+="$("$bin" run -q --no-ephemeral -- /bin/sh -c "$(loop ./built)") "
  exec_copy+="$("$bin" run -q --no-ephemeral -- /bin/sh -c "$(loop ./copy)") "
  if [ -n "$before" ]; then
    exec_in_before+="$("$before" run -q --no-ephemeral -- /bin/sh -c "$(loop /bin/true)") "
    exec_built_before+="$("$before" run -q --no-ephemeral -- /bin/sh -c "$(loop ./built)") "
  fi
done

/usr/bin/python3 - "$rounds" "${samples[bare]}" "${samples[bwrap_true]}" "${samples[bwrap_same_root]}" "${samples[pc_through]}" "${samples[pc_overlay]}" "${samples[pc_no_cgroup]}" "${samples[pc_v2]:-}" "$exec_out" "$exec_in" "$exec_built" "$exec_copy" \
  "${samples[pc_through_before]:-}" "$exec_in_before" "$exec_built_before" <<'PY'
import statistics as st, sys
rounds = int(sys.argv[1])
(bare, bw, same, through, overlay, no_cg, v2, ex_out, ex_in, ex_built, ex_copy, through_before, ex_in_before,
 ex_built_before) = ([int(x) for x in a.split()] for a in sys.argv[2:])
med = lambda xs: st.median(xs)
ratio = lambda a, b: med([x / y for x, y in zip(a, b)])
print(f"rounds: {rounds} (paired; medians)")
print(f"  /bin/true bare                      {med(bare)/1000:7.2f} ms")
print(f"  bubblewrap (equivalent profile)     {med(bw)/1000:7.2f} ms   {ratio(bw, bare):5.1f}x bare")
print(f"  portcullis run --no-ephemeral       {med(through)/1000:7.2f} ms   {ratio(through, bare):5.1f}x bare   {ratio(through, bw):4.2f}x bubblewrap (target <= 1.0)")
print(f"  portcullis run (overlay)            {med(overlay)/1000:7.2f} ms   {ratio(overlay, bare):5.1f}x bare   {ratio(overlay, bw):4.2f}x bubblewrap (target <= 1.5)")
print(f"  for scale: bubblewrap building the same root, in all its namespaces, no capabilities")
print(f"                                      {med(same)/1000:7.2f} ms   {ratio(same, bare):5.1f}x bare   {ratio(same, bw):4.2f}x bubblewrap")
print(f"  portcullis run against it: --no-ephemeral {ratio(through, same):4.2f}x, overlay {ratio(overlay, same):4.2f}x")
print(f"  portcullis run --no-ephemeral, no cgroup (degraded, for comparison)")
print(f"                                      {med(no_cg)/1000:7.2f} ms   {ratio(no_cg, bare):5.1f}x bare   {ratio(no_cg, bw):4.2f}x bubblewrap")
if v2:
    print(f"  portcullis run --no-ephemeral, born in a cgroup v2 cgroup (no controllers on this host)")
    print(f"                                      {med(v2)/1000:7.2f} ms   {ratio(v2, bare):5.1f}x bare   {ratio(v2, bw):4.2f}x bubblewrap")
if through_before:
    print(f"  before (PORTCULLIS_BEFORE), --no-ephemeral")
    print(f"                                      {med(through_before)/1000:7.2f} ms   {ratio(through_before, bare):5.1f}x bare   {ratio(through_before, bw):4.2f}x bubblewrap   now {ratio(through, through_before):4.2f}x it")
print(f"exec from sh, per exec (10 x 500 execs):")
print(f"  /bin/true outside                   {med(ex_out):7.0f} us")
print(f"  /bin/true inside (exec monitor)     {med(ex_in):7.0f} us   {med(ex_in)/med(ex_out):4.2f}x outside (target <= 1.3)")
print(f"  a program built in the workdir      {med(ex_built):7.0f} us   {med(ex_built)/med(ex_out):4.2f}x outside")
print(f"  a copy of /bin/true in the workdir  {med(ex_copy):7.0f} us   {med(ex_copy)/med(ex_out):4.2f}x outside")
if ex_in_before:
    print(f"  before: /bin/true inside            {med(ex_in_before):7.0f} us   {med(ex_in_before)/med(ex_out):4.2f}x outside")
    print(f"  before: the workdir program inside  {med(ex_built_before):7.0f} us   {med(ex_built_before)/med(ex_out):4.2f}x outside")
PY
