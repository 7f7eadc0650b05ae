#!/bin/bash
# run-heap-bench.sh - issue 4's benchmark: a process with 10,000 distinct stacks; `memctl heap` (and `memctl top`) end to end, and the application's malloc stalls meanwhile, against baselines from the same run.
#
# usage: bash tests/bench/run-heap-bench.sh [--quick] [--stacks N] [--window S]
#                                           [--calls N] [--gap MS] [--threads N]
#                                           [--stall-us US] [--nice N]
#
#   --stacks N    distinct stacks in the profiled program (default 10000)
#   --window S    the quiet window, and the no-agent baseline, in seconds (10)
#   --calls N     memctl calls of each kind: status, each heap format, top (20)
#   --gap MS      pause between two memctl calls (50)
#   --threads N   application threads timing malloc/free pairs (1)
#   --stall-us US pairs slower than this are looked at: was the thread
#                 blocked (a voluntary switch) or preempted? (200)
#   --nice N      run the application under `nice -n N` (e.g. -10, as root):
#                 fewer preemptions by other processes, so the stalls left are
#                 more likely libmemd's own (default: not reniced)
#   --quick       --window 4 --calls 5: a smoke run, ~30 s
#
# memd runs on a private socket.  stacks-bench (stacks-bench.c) runs under
# LD_PRELOAD=libmemd.so with MEMD_PROFILE_RATE=1: every allocation is
# sampled, so its N stacks are all in the profile, and each of its timed
# malloc/free pairs takes the sample table's lock.  Once memd has the N
# stacks (`memctl --json status PID`, profile.buckets) the program's threads
# time every pair through these phases, one after the other:
#   quiet    --window s with no request: only the agent's report every second
#   status   --calls x `memctl status`: the end-to-end baseline of a memctl
#   top      `memctl top PID`: the first call (memd's symbol cache cold), then
#            --calls - 1 more; skipped with a note while memctl top says it is
#            not implemented.  Before heap, so nothing has symbolized yet.
#   heap     --calls rounds of `memctl heap PID -o FILE` in each format
#            (proto, text, folded), the order rotated every round
# The no-agent baseline is the same program with MEMD_SOCKET=off, one
# --window s phase, first in the run.
#
# Environment: MEMD_BUILD (default ./build).
set -euo pipefail
export LC_ALL=C

build=${MEMD_BUILD:-./build}
stacks=10000
window=10
calls=20
gap_ms=50
threads=1
stall_us=200
nice_n=
while [ $# -gt 0 ]; do
        case $1 in
        --quick) window=4; calls=5 ;;
        --stacks) stacks=$2; shift ;;
        --window) window=$2; shift ;;
        --calls) calls=$2; shift ;;
        --gap) gap_ms=$2; shift ;;
        --threads) threads=$2; shift ;;
        --stall-us) stall_us=$2; shift ;;
        --nice) nice_n=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-heap-bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

here=$(cd "$(dirname "$0")" && pwd)
bench=$build/tests/bench/stacks-bench
memd=$build/memd/memd
memctl=$build/ctl/memctl
. "$here/common.sh"
bench_setup run-heap-bench.sh "$bench"
[ -x "$memd" ] && [ -x "$memctl" ] || { echo "run-heap-bench.sh: memd/memctl not built under $build" >&2; exit 2; }
renice=()
[ -n "$nice_n" ] && renice=(nice -n "$nice_n")

sock=$tmp/memd.sock
app_pid=
"$memd" --socket "$sock" --log-target stderr 2>"$tmp/memd.log" &
memd_pid=$!
cleanup() {
        [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null
        kill "$memd_pid" 2>/dev/null
        wait 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "run-heap-bench.sh: memd did not start:" >&2; cat "$tmp/memd.log" >&2; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results=$tmp/results    # "KIND MICROSECONDS EXIT_CODE" per memctl call
: >"$results"
: >"$tmp/failures"
gap=$(printf '%d.%03d' $((gap_ms / 1000)) $((gap_ms % 1000)))
usec() { local t=${1/./}; echo $((10#$t)); }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Times one memctl command (its arguments), appends "KIND us rc" to the results.
timed() {
        local kind=$1 t0 t1 rc=0
        shift
        t0=$EPOCHREALTIME
        "$memctl" --socket "$sock" "$@" >"$tmp/out.last" 2>"$tmp/err.last" || rc=$?
        t1=$EPOCHREALTIME
        echo "$kind $(($(usec "$t1") - $(usec "$t0"))) $rc" >>"$results"
        if [ "$rc" -ne 0 ]; then
                echo "$kind: $(head -1 "$tmp/err.last")" >>"$tmp/failures"
        fi
        return "$rc"
}

# 1. The baseline: no agent, same program, same sampling.
echo "run-heap-bench.sh: baseline without the agent (${window}s)..." >&2
"${renice[@]}" env LD_PRELOAD="$libmemd" MEMD_SOCKET=off MEMD_PROFILE_RATE=1 \
        "$bench" -n "$stacks" -t "$threads" -s "$stall_us" -d "$window" -l noagent >"$tmp/noagent.out"

# 2. Attached to memd.
echo "run-heap-bench.sh: attached run..." >&2
"${renice[@]}" env LD_PRELOAD="$libmemd" MEMD_SOCKET="$sock" MEMD_PROFILE_RATE=1 \
        "$bench" -w -n "$stacks" -t "$threads" -s "$stall_us" -l quiet,status,top,heap >"$tmp/app.out" &
app_pid=$!
for _ in $(seq 600); do grep -q '^waiting' "$tmp/app.out" && break; sleep 0.1; done
grep -q '^waiting' "$tmp/app.out" || { echo "run-heap-bench.sh: stacks-bench did not start" >&2; exit 1; }
t_ready=$EPOCHREALTIME
buckets=0
for _ in $(seq 600); do
        buckets=$("$memctl" --socket "$sock" --json status "$app_pid" 2>/dev/null |
                grep -o '"profile": {"buckets": [0-9]*' | grep -o '[0-9]*$' || true)
        [ "${buckets:-0}" -ge "$stacks" ] && break
        sleep 0.1
done
[ "${buckets:-0}" -ge "$stacks" ] ||
        { echo "run-heap-bench.sh: memd has ${buckets:-0} stacks of process $app_pid, not $stacks" >&2; exit 1; }
t_known=$EPOCHREALTIME
sleep 1.2 # one more report: the agent is in its steady state (deltas)

next_phase() { # waits until the program says the phase started
        local n
        n=$(grep -c '^phase-started' "$tmp/app.out" || true)
        kill -USR1 "$app_pid"
        for _ in $(seq 200); do
                [ "$(grep -c '^phase-started' "$tmp/app.out" || true)" -gt "$n" ] && return 0
                sleep 0.01
        done
        echo "run-heap-bench.sh: stacks-bench did not start its next phase" >&2
        exit 1
}

echo "run-heap-bench.sh: quiet window (${window}s)..." >&2
next_phase # quiet
sleep "$window"

echo "run-heap-bench.sh: $calls x memctl status..." >&2
next_phase # status
for ((i = 0; i < calls; i++)); do
        timed status status || true
        sleep "$gap"
done

echo "run-heap-bench.sh: memctl top..." >&2
next_phase # top
top_note=
if timed top_cold top "$app_pid"; then
        for ((i = 1; i < calls; i++)); do
                sleep "$gap"
                timed top_warm top "$app_pid" || true
        done
elif grep -qi 'not implemented' "$tmp/err.last"; then
        top_note="skipped: 'memctl top' says it is not implemented yet"
        sed -i '/^top_cold /d' "$results"
        sed -i '/^top_cold: /d' "$tmp/failures"
else
        top_note="failed: $(head -1 "$tmp/err.last")"
fi

echo "run-heap-bench.sh: $calls x memctl heap in 3 formats..." >&2
next_phase # heap
formats=(proto text folded)
memd_cpu0=$(cpu_ticks "$memd_pid")
for ((i = 0; i < calls; i++)); do
        for ((k = 0; k < 3; k++)); do
                f=${formats[$(((i + k) % 3))]}
                timed "heap_$f" heap "$app_pid" --format "$f" -o "$tmp/heap.$f" || true
                sleep "$gap"
        done
done
memd_cpu1=$(cpu_ticks "$memd_pid")
kill -TERM "$app_pid"
wait "$app_pid" || true
app_pid=
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

sizes=
for f in "${formats[@]}"; do
        sizes="$sizes $f=$(stat -c %s "$tmp/heap.$f" 2>/dev/null || echo 0)"
done

# What was measured: the source tree the build directory was configured from.
src=$(sed -n 's/.*"source": *"\([^"]*\)".*/\1/p' "$build/meson-info/meson-info.json" 2>/dev/null | head -1 || true)
echo
echo "memctl heap/top on a process with $stacks distinct stacks: ${src:-?} at $(git -C "${src:-$here}" describe --always --dirty 2>/dev/null || echo '(not a git tree)'), $(nproc) CPUs, load average $load_before before, $load_after after"
python3 - "$results" "$tmp/noagent.out" "$tmp/app.out" "$calls" "$threads" "$buckets" \
        "$(($(usec "$t_known") - $(usec "$t_ready")))" "$((memd_cpu1 - memd_cpu0))" "$(getconf CLK_TCK)" \
        "$top_note" "${nice_n:-0}" "$sizes" "$stall_us" <<'PY'
import sys

(results, noagent, app, calls, threads, buckets, known_us, memd_ticks, hz, top_note, nice_n,
 sizes, stall_us) = sys.argv[1:]
calls, memd_ticks, hz = int(calls), int(memd_ticks), int(hz)

def kv(line):
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)

times = {}
for line in open(results):
    kind, us, rc = line.split()
    if rc == "0":
        times.setdefault(kind, []).append(int(us) / 1000.0)

def pct(xs, q):  # nearest rank
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(-(-q * len(xs) // 1)) - 1))]

phases, stalls = {}, {}
for path in (noagent, app):
    for line in open(path):
        if line.startswith("phase "):
            d = kv(line)
            phases[d["name"]] = d
        elif line.startswith("stall "):
            d = kv(line)
            stalls.setdefault(d["phase"], []).append(d)

status_p50 = pct(times["status"], 0.5) if times.get("status") else None
print()
print("End to end, ms (exec to exit; nearest-rank percentiles over the successful calls)")
print("%-28s %5s %8s %8s %8s %8s %12s" % ("command", "calls", "p50", "p90", "max", "target", "p50/status"))
rows = [("memctl status", "status", None),
        ("memctl top (cold, 1st)", "top_cold", 300),
        ("memctl top (warm)", "top_warm", 300),
        ("memctl heap -o (proto)", "heap_proto", 200),
        ("memctl heap -o (text)", "heap_text", 200),
        ("memctl heap -o (folded)", "heap_folded", 200)]
for label, kind, target in rows:
    xs = times.get(kind)
    if not xs:
        if kind.startswith("top"):
            if kind == "top_cold":
                print("%-28s %s" % ("memctl top", top_note or "no successful call"))
            continue
        print("%-28s %5d  no successful call" % (label, 0))
        continue
    p50 = pct(xs, 0.5)
    print("%-28s %5d %8.1f %8.1f %8.1f %8s %11.2fx" % (
        label, len(xs), p50, pct(xs, 0.9), max(xs), "%d" % target if target else "-",
        p50 / status_p50 if status_p50 else float("nan")))
heap_calls = sum(len(times.get("heap_" + f, [])) for f in ("proto", "text", "folded"))
if heap_calls:
    print("memd CPU over the heap phase: %.1f ms per heap call (%d calls, %d ticks of %d Hz)" % (
        memd_ticks * 1000.0 / hz / heap_calls, heap_calls, memd_ticks, hz))
print("profile files:", ", ".join("%s %.1f KiB" % (f, int(n) / 1024) for f, n in
                                  (s.split("=") for s in sizes.split())))
print("memd had all %s stacks %.2f s after the program was ready" % (buckets, int(known_us) / 1e6))

print()
print("Application: one malloc(64)/free pair, us (%s thread%s, every pair sampled: 2 takes of the sample lock%s)" % (
    threads, "" if threads == "1" else "s", ", nice %s" % nice_n if nice_n != "0" else ""))
print("%-24s %5s %9s %6s %6s %6s %7s %9s %7s %8s %5s %5s %7s %9s %5s %5s" % (
    "phase", "s", "pairs", "p50", "p99", "p99.9", "p99.99", "max", "target", "max/base", ">1ms", ">5ms",
    "blocked", "max blkd", "vcs", "ivcs"))
base = float(phases["noagent"]["max_us"]) if "noagent" in phases else None
labels = [("noagent", "no agent (baseline)"), ("quiet", "agent, quiet window"),
          ("status", "agent, memctl status"), ("top", "agent, memctl top"), ("heap", "agent, memctl heap")]
for name, label in labels:
    d = phases.get(name)
    if not d or d.get("pairs", "0") == "0":
        continue
    if name == "top" and top_note:
        label += " (none)"
    print("%-24s %5.1f %9s %6s %6s %6s %7s %9s %7s %7.2fx %5s %5s %7s %9s %5s %5s" % (
        label, float(d["seconds"]), d["pairs"], d["p50_us"], d["p99_us"], d["p999_us"], d["p9999_us"],
        d["max_us"], "5000", float(d["max_us"]) / base if base else float("nan"), d["over_1ms"],
        d["over_5ms"], d["blocked"], d["max_blocked_us"] if d["blocked"] != "0" else "-", d["vcs"], d["ivcs"]))
print("max/base: max over the no-agent baseline's max.  blocked / max blkd: the pairs over %s us during" % stall_us)
print("which the thread switched voluntarily (it slept in a futex: it waited for a lock, not preempted),")
print("and the longest of them: the pause libmemd caused.  vcs/ivcs: the thread's voluntary /")
print("involuntary (preempted) context switches over the phase.")

print()
print("Longest stalls (us) per phase, at ms from the phase start; v = blocked, p = preempted, no mark = neither:")
for name, _ in labels:
    ss = stalls.get(name)
    if not ss:
        continue
    ss = sorted(ss, key=lambda s: -float(s["us"]))[:8]
    print("  %-8s %s" % (name, "  ".join("%.0f@%.0f%s" % (float(s["us"]), float(s["at_ms"]),
                                      "v" if int(s["vcs"]) > 0 else ("p" if int(s["ivcs"]) > 0 else ""))
                                      for s in ss)))
PY
if [ -s "$tmp/failures" ]; then
        echo
        echo "failed calls:"
        sort "$tmp/failures" | uniq -c | head -20
fi
# Anything memd said besides starting and attaching is worth a look.
quiet_log=(-e ' attach pid' -e ' detach pid' -e '^memd: listening on ' -e '^memd: memd .* ready$')
if grep -qv "${quiet_log[@]}" "$tmp/memd.log"; then
        echo
        echo "memd's log (other than start, attach, detach):"
        grep -v "${quiet_log[@]}" "$tmp/memd.log" | head -20
fi
