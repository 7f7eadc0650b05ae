#!/bin/bash
# run-policy-bench.sh - issue 5's policy benchmarks: the time from a MemoryLimit crossing to RSS under the limit (memd against libmemd in-process), and memd's CPU for policy evaluation with 1,000 agents.
#
# usage: bash tests/bench/run-policy-bench.sh [--quick] [--runs N] [--limit MIB] [--rate MIB_S]
#                                             [--agents N] [--window S] [--cpu-rounds N]
#                                             [--skip-limit] [--skip-cpu]
#
# 1. Limit: limit-bench (limit-bench.c) grows a cache of 1 KiB entries at
#    RATE MiB/s (default 64) from a random point of the stats second to twice
#    LIMIT MiB (default 64) and holds it; its reclaimer empties it.  It times
#    itself: from its RSS first over the limit to its RSS back under it
#    (10 ms readings).  Variants, alternated N times (default 7), the order
#    swapped each round:
#      in-process  LD_PRELOAD=libmemd.so MEMD_SOCKET=off MEMD_MEMORY_LIMIT=LIMIT
#                  (the monitor thread, 100 ms ticks): the baseline
#      memd        LD_PRELOAD=libmemd.so MEMD_SOCKET=memd's, and memd run with
#                  a policy.d file [Match] Comm=limit-bench, MemoryLimit=LIMIT
#    The table gives medians, min and max, and the median's ratio to
#    in-process.
# 2. CPU: memd with N agents of agents-bench (default 1000), two configs:
#      defaults    --config-dir of an empty directory: the built-in policy
#                  (the idle check runs on every MEMSTATS)
#      policies    20 policy.d files that match nothing (Comm=nomatch-K) and
#                  one that matches every process with MemoryLimit=1T and
#                  IdleMemoryMax=1T: the limit check runs on every MEMSTATS,
#                  nothing ever acts
#    Each config: a fresh memd, a quiet window of S seconds (default 20)
#    with no agent (the baseline), then the agents attached and one more
#    window.  memd's CPU share of one core comes from utime+stime in
#    /proc/PID/stat.  --cpu-rounds N (default 2) repeats both configs, the
#    order swapped each round.
#
# --quick: 5 runs, 10 s windows, 1 CPU round (~2 minutes).
# Environment: MEMD_BUILD (default ./build).

set -euo pipefail

build=${MEMD_BUILD:-./build}
runs=7
limit_mib=64
rate=64
agents=1000
window=20
cpu_rounds=2
do_limit=1
do_cpu=1

while [ $# -gt 0 ]; do
        case $1 in
        --quick) runs=5; window=10; cpu_rounds=1 ;;
        --runs) runs=$2; shift ;;
        --limit) limit_mib=$2; shift ;;
        --rate) rate=$2; shift ;;
        --agents) agents=$2; shift ;;
        --window) window=$2; shift ;;
        --cpu-rounds) cpu_rounds=$2; shift ;;
        --skip-limit) do_limit= ;;
        --skip-cpu) do_cpu= ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-policy-bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

prog=$build/tests/bench/limit-bench
agents_bench=$build/tests/bench/agents-bench
memd=$build/memd/memd
memctl=$build/ctl/memctl
. "$(dirname "$0")/common.sh"
bench_setup run-policy-bench.sh "$prog"
for f in "$memd" "$memctl" "$agents_bench"; do
        [ -x "$f" ] || { echo "run-policy-bench.sh: $f missing; build first (ninja -C $build)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "run-policy-bench.sh: python3 is needed for the tables" >&2; exit 2; }

sock=$tmp/memd.sock
log=$tmp/memd.log
memd_pid=
bench_pid=
cleanup() {
        [ -z "$bench_pid" ] || kill -TERM "$bench_pid" 2>/dev/null || true
        [ -z "$memd_pid" ] || kill -TERM "$memd_pid" 2>/dev/null || true
        wait 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT

die() { echo "run-policy-bench.sh: $*" >&2; [ ! -s "$log" ] || tail -n 20 "$log" >&2; exit 1; }
ctl() { "$memctl" --socket "$sock" "$@"; }
rows() { ctl status 2>/dev/null | tail -n +2 | wc -l; }

# memd_start CONFIG_DIR [NOFILE]: a fresh memd on $sock, logging to $log.
memd_start() {
        rm -f "$sock"
        (ulimit -S -n "${2:-1024}" && exec "$memd" --socket "$sock" --log-target stderr --config-dir "$1") 2>"$log" &
        memd_pid=$!
        for _ in $(seq 50); do
                [ -S "$sock" ] && return 0
                kill -0 "$memd_pid" 2>/dev/null || die "memd exited at start"
                sleep 0.1
        done
        die "memd did not create $sock within 5 s"
}
memd_stop() {
        kill -TERM "$memd_pid"
        wait "$memd_pid" || die "memd exited with $?"
        memd_pid=
}
cpu_ticks() { proc_cpu_ticks "$memd_pid" || die "memd (pid $memd_pid) is gone"; }
# cpu_window: memd's CPU, % of one core, over $window seconds.
cpu_window() {
        local k0 t0 k1 t1
        k0=$(cpu_ticks); t0=$EPOCHREALTIME
        sleep "$window"
        k1=$(cpu_ticks); t1=$EPOCHREALTIME
        python3 -c "print(f'{($k1 - $k0) / $(getconf CLK_TCK) / ($t1 - $t0) * 100:.3f}')"
}

src=$(cd "$(dirname "$0")" && git describe --always --dirty 2>/dev/null || echo unknown)
echo "run-policy-bench: source $src, memd sha256 $(sha256sum "$memd" | cut -c1-12), $(nproc) CPUs, $(uname -r)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "$do_limit" ]; then
        cfg=$tmp/limit-cfg
        mkdir -p "$cfg/policy.d"
        printf '[Match]\nComm=limit-bench\n\n[Policy]\nMemoryLimit=%sM\n' "$limit_mib" >"$cfg/policy.d/10-limit.policy"
        memd_start "$cfg"
        out=$tmp/limit.results
        : >"$out"
        echo "limit: $runs runs of each variant, limit $limit_mib MiB, growth $rate MiB/s to $((2 * limit_mib)) MiB ..." >&2
        for ((i = 0; i < runs; i++)); do
                order="inproc memd"
                [ $((i % 2)) -eq 0 ] || order="memd inproc"
                for v in $order; do
                        if [ "$v" = inproc ]; then
                                line=$(LD_PRELOAD=$libmemd MEMD_SOCKET=off MEMD_MEMORY_LIMIT=${limit_mib}M \
                                        "$prog" -l "$limit_mib" -r "$rate") || true
                        else
                                line=$(LD_PRELOAD=$libmemd MEMD_SOCKET=$sock "$prog" -l "$limit_mib" -r "$rate") || true
                        fi
                        [ -n "$line" ] || die "limit-bench ($v) printed nothing"
                        echo "$v $(cut -d' ' -f1-3 /proc/loadavg) ${line#result }" >>"$out"
                done
        done
        n=$(grep -c "policy limit: MemoryLimit" "$log" || true)
        memd_stop
        echo "limit: memd logged $n policy limit decisions for $runs memd runs"
        python3 - "$out" "$limit_mib" "$rate" <<'EOF'
import statistics, sys

path, limit, rate = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
loads = []
for line in open(path):
    f = line.split()
    v, load = f[0], float(f[1])
    kv = dict(x.split("=", 1) for x in f[4:])
    loads.append(load)
    under, cross = float(kv["under_ms"]), float(kv["rss_cross_ms"])
    ms = under - cross if under >= 0 and cross >= 0 else float("nan")
    runs.setdefault(v, []).append((ms, kv))

print()
print(f"time from RSS over {limit} MiB to RSS under it (growth {rate} MiB/s to 2x the limit; 10 ms readings);"
      f" load average (1 min) {min(loads):.2f}-{max(loads):.2f} over the runs")
print(f"{'variant':<12} {'runs':>4} {'median ms':>10} {'min':>8} {'max':>8} {'ratio':>7} {'peak RSS MiB':>13} {'reclaims':>9} {'failed':>6}")
base = None
for v, label in (("inproc", "in-process"), ("memd", "memd")):
    r = runs.get(v, [])
    ok = sorted(ms for ms, _ in r if ms == ms)
    if not ok:
        print(f"{label:<12} {len(r):>4}  no run got under the limit")
        continue
    med = statistics.median(ok)
    if base is None:
        base = med
    peak = statistics.median(int(kv["peak_rss_kib"]) / 1024 for _, kv in r)
    calls = statistics.median(int(kv["reclaimer_calls"]) for _, kv in r)
    print(f"{label:<12} {len(r):>4} {med:>10.0f} {ok[0]:>8.0f} {ok[-1]:>8.0f} {med / base:>6.2f}x {peak:>13.0f} {calls:>9.0f} {len(r) - len(ok):>6}")
print("ratio: the median over the in-process median (libmemd's own MEMD_MEMORY_LIMIT, the baseline); target for memd: <= 2000 ms")
EOF
fi

if [ -n "$do_cpu" ]; then
        empty=$tmp/cfg-defaults
        pol=$tmp/cfg-policies
        mkdir -p "$empty" "$pol/policy.d"
        for k in $(seq -w 1 20); do
                printf '[Match]\nComm=nomatch-%s\n\n[Policy]\nMemoryLimit=%sM\n' "$k" "$k" >"$pol/policy.d/$k-nomatch.policy"
        done
        printf '[Policy]\nMemoryLimit=1T\nIdleMemoryMax=1T\n' >"$pol/policy.d/99-all.policy"
        out=$tmp/cpu.results
        : >"$out"
        for ((i = 0; i < cpu_rounds; i++)); do
                order="defaults policies"
                [ $((i % 2)) -eq 0 ] || order="policies defaults"
                for c in $order; do
                        dir=$empty
                        [ "$c" = defaults ] || dir=$pol
                        memd_start "$dir" $((2 * agents + 256))
                        sleep 1
                        echo "cpu: $c, round $((i + 1)): no agents ..." >&2
                        put_load=$(cut -d' ' -f1 /proc/loadavg)
                        base=$(cpu_window)
                        echo "cpu: $c, round $((i + 1)): attaching $agents agents ..." >&2
                        "$agents_bench" -n "$agents" -d 0 -s "$sock" >"$tmp/bench.out" 2>"$tmp/bench.err" &
                        bench_pid=$!
                        wait_agents "$bench_pid" "$agents" "$tmp/bench.out" "$tmp/bench.err"
                        # The policy was resolved for the fake agents (their pids are real children).
                        apid=$(ctl status | awk 'NR == 2 { print $1 }')
                        if [ "$c" = policies ]; then
                                ctl status "$apid" | grep -Eq "MemoryLimit=[0-9.]+ [KMGT]iB +from $pol/policy.d/99-all.policy" ||
                                        die "agent $apid does not have 99-all.policy's limit: $(ctl status "$apid" | sed -n '/^Policy/,/^Recent/p')"
                        fi
                        sleep 2
                        echo "cpu: $c, round $((i + 1)): measuring ..." >&2
                        load=$(cpu_window)
                        echo "$c $put_load $(cut -d' ' -f1 /proc/loadavg) $base $load" >>"$out"
                        kill -TERM "$bench_pid"
                        wait "$bench_pid" || die "agents-bench failed: $(cat "$tmp/bench.err")"
                        bench_pid=
                        acts=$(grep -c "policy \(limit\|idle\)" "$log" || true)
                        [ "$acts" -eq 0 ] || echo "cpu: $c: memd acted $acts times on the agents (policy limit/idle lines)" >&2
                        memd_stop
                done
        done
        python3 - "$out" "$agents" "$window" <<'EOF'
import statistics, sys

path, agents, window = sys.argv[1], int(sys.argv[2]), sys.argv[3]
R = {}
loads = []
for line in open(path):
    c, l0, l1, base, load = line.split()
    loads += [float(l0), float(l1)]
    R.setdefault(c, []).append((float(base), float(load)))

print()
print(f"memd CPU, % of one core over {window} s windows (median of {len(R['defaults'])} round(s));"
      f" load average (1 min) {min(loads):.2f}-{max(loads):.2f}")
print(f"{'config':<10} {'no agents':>10} {f'{agents} agents':>12} {'agents - none':>14} {'ratio':>7}   rounds (none / agents)")
med = {}
for c in ("defaults", "policies"):
    b = statistics.median(x for x, _ in R[c])
    l = statistics.median(y for _, y in R[c])
    med[c] = (b, l)
    each = ", ".join(f"{x:.2f}/{y:.2f}" for x, y in R[c])
    # A short window can round the baseline to no clock tick at all.
    ratio = f"{l / med['defaults'][1]:>6.2f}x" if med["defaults"][1] > 0 else f"{'-':>7}"
    print(f"{c:<10} {b:>10.2f} {l:>12.2f} {l - b:>14.2f} {ratio}   {each}")
extra = (med["policies"][1] - med["defaults"][1]) * 1000 / agents
print(f"policy evaluation, extra over the defaults per 1,000 processes: {extra:+.2f} % of a core"
      f" (ratio: with agents, over the defaults with agents; a clock tick is 10 ms, so {1 / float(window):.2f} % is one tick)")
EOF
fi
