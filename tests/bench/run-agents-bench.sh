#!/bin/bash
# run-agents-bench.sh - memd under 1,000 simulated agents: its CPU share, RSS and memctl status latency, against an idle memd measured in the same run.
#
# usage: bash tests/bench/run-agents-bench.sh [--quick] [--agents N] [--window S] [--calls N] [--gap MS]
#                                             [--buckets N] [--stacks N] [--pauses N] [--memd-nofile N]
#                                             [--keep-log FILE] [--config-dir DIR]
#
# Starts memd on a private socket (log on stderr, to a file) and measures it
# twice, with the same steps: first with no agent (the baseline), then with
# N agents of agents-bench attached, each sending a MEMSTATS and a
# PROFILE_DELTA every second, spread evenly over the second.  Each time:
#   1. a quiet window of S seconds (default 20) with no control client:
#      memd's CPU share of one core (utime+stime deltas from /proc/PID/stat),
#      VmRSS and VmHWM (/proc/PID/status) at its end, log lines written in it;
#   2. then CALLS (default 200) `memctl status` spaced GAP ms (default 50),
#      as many `memctl --json status`, and as many STATUS_REQUEST round trips
#      by agents-bench --probe (no process start, no printing: memd's share
#      of the latency, and the reply's size on the wire).
# memd gets a soft RLIMIT_NOFILE of 2 N + 256 (it needs a connection and a
# pidfd per agent) unless --memd-nofile says otherwise.  The table gives each
# figure with no agents and with N, their ratio and the target.
#
# --config-dir DIR is passed to memd (its policies; without it memd reads
# /etc/memd, and with no files there the built-in defaults apply).
# --quick: 10 s windows, 50 calls of each kind (about 1 minute in all).
# Environment: MEMD_BUILD (default ./build).

set -euo pipefail

build=${MEMD_BUILD:-./build}
agents=1000
window=20
calls=200
gap_ms=50
buckets=3
stacks=16
pauses=8
memd_nofile=
keep_log=
config_dir=

while [ $# -gt 0 ]; do
        case $1 in
        --quick) window=10; calls=50 ;;
        --agents) agents=$2; shift ;;
        --window) window=$2; shift ;;
        --calls) calls=$2; shift ;;
        --gap) gap_ms=$2; shift ;;
        --buckets) buckets=$2; shift ;;
        --stacks) stacks=$2; shift ;;
        --pauses) pauses=$2; shift ;;
        --memd-nofile) memd_nofile=$2; shift ;;
        --keep-log) keep_log=$2; shift ;;
        --config-dir) config_dir=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-agents-bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

bench=$build/tests/bench/agents-bench
memd=$build/memd/memd
memctl=$build/ctl/memctl
. "$(dirname "$0")/common.sh"
bench_setup run-agents-bench.sh "$bench"
for f in "$memd" "$memctl"; do
        [ -x "$f" ] || { echo "run-agents-bench.sh: $f missing; build first (ninja -C $build)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "run-agents-bench.sh: python3 is needed for the table" >&2; exit 2; }

sock=$tmp/memd.sock
log=$tmp/memd.log
results=$tmp/results
memd_pid=
bench_pid=
cleanup() {
        [ -z "$bench_pid" ] || kill -TERM "$bench_pid" 2>/dev/null || true
        [ -z "$memd_pid" ] || kill -TERM "$memd_pid" 2>/dev/null || true
        wait 2>/dev/null || true
        [ -z "$keep_log" ] || cp "$log" "$keep_log" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT

die() { echo "run-agents-bench.sh: $*" >&2; [ ! -s "$log" ] || tail -n 20 "$log" >&2; exit 1; }
ctl() { "$memctl" --socket "$sock" "$@"; }
rows() { ctl status 2>/dev/null | tail -n +2 | wc -l; }
loglines() { wc -l <"$log"; }
cpu_ticks() { proc_cpu_ticks "$memd_pid" || die "memd (pid $memd_pid) is gone"; }
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$memd_pid/status"; }
put() { echo "$*" >>"$results"; }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# lat_loop FILE CMD...: CALLS runs of CMD (stdout discarded), GAP ms apart;
# FILE gets "start end status" per run, times from $EPOCHREALTIME.
lat_loop() {
        local out=$1 t0 t1 r i
        shift
        : >"$out"
        for ((i = 0; i < calls; i++)); do
                r=0
                t0=$EPOCHREALTIME
                "$@" >/dev/null 2>>"$tmp/ctl.err" || r=$?
                t1=$EPOCHREALTIME
                echo "$t0 $t1 $r" >>"$out"
                sleep_ms "$gap_ms"
        done
}

# mark: remembers memd's CPU ticks, the time and the log's length now.
mark() { m_ticks=$(cpu_ticks); m_time=$EPOCHREALTIME; m_lines=$(loglines); }
# since TAG NAME: NAME_ticks, NAME_s and NAME_loglines since the last mark.
since() {
        put "$1 $2_ticks $(($(cpu_ticks) - m_ticks))"
        put "$1 $2_s $(python3 -c "print($EPOCHREALTIME - $m_time)")"
        put "$1 $2_loglines $(($(loglines) - m_lines))"
}

# measure TAG: the quiet window, then the status calls (see the header).
measure() {
        local tag=$1 probe kv kind
        mark
        sleep "$window"
        since "$tag" quiet
        put "$tag rss_kb $(status_kb VmRSS)"
        put "$tag hwm_kb $(status_kb VmHWM)"
        put "$tag fds $(find "/proc/$memd_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"

        ctl status >"$tmp/$tag.status.txt" || die "memctl status failed"
        ctl --json status >"$tmp/$tag.status.json" || die "memctl --json status failed"
        put "$tag rows $(($(wc -l <"$tmp/$tag.status.txt") - 1))"
        put "$tag text_bytes $(wc -c <"$tmp/$tag.status.txt")"
        put "$tag json_bytes $(wc -c <"$tmp/$tag.status.json")"

        mark
        lat_loop "$tmp/$tag.lat.status" "$memctl" --socket "$sock" status
        lat_loop "$tmp/$tag.lat.json" "$memctl" --socket "$sock" --json status
        probe=$("$bench" --probe "$calls" --gap "$gap_ms" -s "$sock") || die "agents-bench --probe failed"
        since "$tag" calls
        put "$tag rss_after_calls_kb $(status_kb VmRSS)"
        put "$tag hwm_after_calls_kb $(status_kb VmHWM)"
        for kv in ${probe#probe }; do
                put "$tag probe_${kv%%=*} ${kv#*=}"
        done
        for kind in status json; do
                put "$tag lat_$kind $tmp/$tag.lat.$kind"
        done
}

nofile=${memd_nofile:-$((2 * agents + 256))}
: >"$results"
: >"$tmp/ctl.err"
memd_args=(--socket "$sock" --log-target stderr)
[ -z "$config_dir" ] || memd_args+=(--config-dir "$config_dir")
(ulimit -S -n "$nofile" && exec "$memd" "${memd_args[@]}") 2>"$log" &
memd_pid=$!
for _ in $(seq 50); do
        [ -S "$sock" ] && break
        kill -0 "$memd_pid" 2>/dev/null || die "memd exited at start"
        sleep 0.1
done
[ -S "$sock" ] || die "memd did not create $sock within 5 s"

src=$(cd "$(dirname "$0")" && git describe --always --dirty 2>/dev/null || echo unknown)
echo "agents-bench: $agents agents x (MEMSTATS + PROFILE_DELTA of $buckets buckets) per second, $stacks stacks of 16 frames, $pauses GC pauses each"
echo "windows ${window} s quiet, then $calls calls of each kind ${gap_ms} ms apart; $(nproc) CPUs, $(uname -r)"
echo "memd: $memd (source $src, sha256 $(sha256sum "$memd" | cut -c1-12)), pid $memd_pid," \
        "open files soft/hard $(awk '/^Max open files/ { print $4 "/" $5 }' "/proc/$memd_pid/limits")"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running competes for the same cores)"
sleep 1

echo "baseline: no agents ..." >&2
measure base
[ "$(rows)" -eq 0 ] || die "processes attached during the baseline"

echo "attaching $agents agents ..." >&2
mark
"$bench" -n "$agents" -d 0 -s "$sock" -b "$buckets" -k "$stacks" --pauses "$pauses" \
        >"$tmp/bench.out" 2>"$tmp/bench.err" &
bench_pid=$!
wait_agents "$bench_pid" "$agents" "$tmp/bench.out" "$tmp/bench.err"
since load attach
# One full period, so every agent has sent deltas and memd holds them all.
sleep 2

echo "measuring with $agents agents ..." >&2
measure load

# Before the children exit: 1,000 of them runnable at once would show in it.
echo "load average at the end of the measurements: $(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM "$bench_pid"
wait "$bench_pid" || die "agents-bench failed: $(cat "$tmp/bench.err")"
bench_pid=
t0=$EPOCHREALTIME
for _ in $(seq 300); do
        [ "$(rows)" -eq 0 ] && break
        sleep 0.1
done
t1=$EPOCHREALTIME
put "load detach_s $(python3 -c "print($t1 - $t0)")"
put "load rows_after_detach $(rows)"
sed -n 's/^done //p' "$tmp/bench.out" | tr ' ' '\n' | sed 's/^/bench /; s/=/ /' >>"$results"
grep -q '^done ' "$tmp/bench.out" || die "agents-bench printed no summary: $(cat "$tmp/bench.err")"
put "total loglines $(loglines)"
put "total ctl_errors $(wc -l <"$tmp/ctl.err")"

kill -TERM "$memd_pid"
r=0
wait "$memd_pid" || r=$?
memd_pid=
put "total memd_exit $r"

python3 - "$results" "$agents" "$(getconf CLK_TCK)" <<'EOF'
import math, sys

path, agents, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
R = {}
for line in open(path):
    tag, key, val = line.rstrip("\n").split(" ", 2)
    R[(tag, key)] = val

def num(tag, key):
    return float(R[(tag, key)])

def lat(tag, kind):
    ms, fails = [], 0
    for line in open(R[(tag, "lat_" + kind)]):
        t0, t1, rc = line.split()
        ms.append((float(t1) - float(t0)) * 1000)
        fails += rc != "0"
    ms.sort()
    q = lambda p: ms[max(0, math.ceil(p * len(ms)) - 1)]
    return q(0.5), q(0.99), ms[-1], fails

def cpu(tag, what):
    return num(tag, what + "_ticks") / hz / num(tag, what + "_s") * 100

rows = []   # label, base, load, unit/format, target (fn, text) or None
def row(label, b, l, fmt, target=None):
    rows.append((label, b, l, fmt, target))

row("memd CPU, % of one core (quiet window)", cpu("base", "quiet"), cpu("load", "quiet"), "{:.2f}",
    (lambda v: v <= 2, "<= 2 %"))
row("memd CPU, % of one core (during the status calls)", cpu("base", "calls"), cpu("load", "calls"), "{:.2f}")
row("memd VmRSS, MiB (end of quiet window)", num("base", "rss_kb") / 1024, num("load", "rss_kb") / 1024, "{:.1f}",
    (lambda v: v <= 32, "<= 32 MiB"))
row("memd VmRSS, MiB (after the status calls)", num("base", "rss_after_calls_kb") / 1024,
    num("load", "rss_after_calls_kb") / 1024, "{:.1f}", (lambda v: v <= 32, "<= 32 MiB"))
row("memd VmHWM (peak RSS), MiB (end)", num("base", "hwm_after_calls_kb") / 1024,
    num("load", "hwm_after_calls_kb") / 1024, "{:.1f}", (lambda v: v <= 32, "<= 32 MiB"))
for kind, name in (("status", "memctl status"), ("json", "memctl --json status")):
    b, l = lat("base", kind), lat("load", kind)
    row(name + ", p50 ms", b[0], l[0], "{:.1f}")
    row(name + ", p99 ms", b[1], l[1], "{:.1f}", (lambda v: v <= 50, "<= 50 ms"))
    row(name + ", max ms", b[2], l[2], "{:.1f}")
    if b[3] or l[3]:
        row(name + ", failed calls", b[3], l[3], "{:.0f}")
row("STATUS_REQUEST to first reply byte (probe), p50 ms", num("base", "probe_ttfb_p50_ms"), num("load", "probe_ttfb_p50_ms"), "{:.2f}")
row("STATUS_REQUEST to first reply byte (probe), p99 ms", num("base", "probe_ttfb_p99_ms"), num("load", "probe_ttfb_p99_ms"), "{:.2f}")
row("STATUS_REQUEST to decoded reply (probe), p50 ms", num("base", "probe_rtt_p50_ms"), num("load", "probe_rtt_p50_ms"), "{:.2f}")
row("STATUS_REQUEST to decoded reply (probe), p99 ms", num("base", "probe_rtt_p99_ms"), num("load", "probe_rtt_p99_ms"), "{:.2f}")
row("connect+HELLO+STATUS (probe), p99 ms", num("base", "probe_total_p99_ms"), num("load", "probe_total_p99_ms"), "{:.2f}")
row("STATUS_REPLY size, bytes", num("base", "probe_reply_bytes"), num("load", "probe_reply_bytes"), "{:.0f}")
row("memctl status output, bytes", num("base", "text_bytes"), num("load", "text_bytes"), "{:.0f}")
row("memctl --json status output, bytes", num("base", "json_bytes"), num("load", "json_bytes"), "{:.0f}")
row("rows in memctl status", num("base", "rows"), num("load", "rows"), "{:.0f}")
row("memd open fds", num("base", "fds"), num("load", "fds"), "{:.0f}")
row("memd log lines in the quiet window", num("base", "quiet_loglines"), num("load", "quiet_loglines"), "{:.0f}")
row("memd log lines during the status calls", num("base", "calls_loglines"), num("load", "calls_loglines"), "{:.0f}")

print()
print(f"{'':<50} {'no agents':>11} {f'{agents} agents':>13} {'ratio':>8}  {'target':<10} verdict")
for label, b, l, fmt, target in rows:
    ratio = f"{l / b:.2f}" if b else "-"
    t, verdict = ("", "")
    if target:
        t, verdict = target[1], ("ok" if target[0](l) else "MISSED")
    print(f"{label:<50} {fmt.format(b):>11} {fmt.format(l):>13} {ratio:>8}  {t:<10} {verdict}")

g = lambda k: R[("bench", k)]
secs = float(g("seconds"))
print()
print(f"attach: {agents} agents listed by memctl status {num('load', 'attach_s'):.1f} s after the start of agents-bench;"
      f" memd used {num('load', 'attach_ticks') / hz:.2f} s of CPU and wrote {num('load', 'attach_loglines'):.0f} log lines meanwhile")
print(f"detach: the list was empty {num('load', 'detach_s'):.1f} s after agents-bench stopped"
      f" ({num('load', 'rows_after_detach'):.0f} rows left); memd log: {num('total', 'loglines'):.0f} lines in all;"
      f" memd exit status {num('total', 'memd_exit'):.0f}")
print(f"load generator: {g('attached')} of {g('agents')} agents attached at the end, {g('closed_by_memd')} connections closed by memd,"
      f" {int(g('msgs_sent')) / secs:.0f} messages/s, {int(g('bytes_sent')) / secs / 1024:.0f} KiB/s sent;"
      f" sends late by p50 {g('late_p50_ms')} ms, p99 {g('late_p99_ms')} ms, max {g('late_max_ms')} ms;"
      f" its own CPU {(float(g('cpu_user_s')) + float(g('cpu_sys_s'))) / secs * 100:.1f} % of one core")
print("memctl latencies are wall times of the whole command (process start, connect, HELLO, STATUS, decode, print to /dev/null);"
      " p99 is the nearest rank.")
EOF
