#!/bin/bash
# run-memctl-free.sh - `memctl free-os-memory PID` on the seed scenario (1 GiB cache emptied, one entry kept), end to end, against the same give-back made inside the process, by glibc, and by Go, in the same run.
#
# usage: bash tests/bench/run-memctl-free.sh [--quick] [--repeat N] [--threads N]
#
# memd runs on a private socket.  Rows (each run fills 1 GiB, empties it but
# for one entry, then gives the memory back):
#   memctl        seed-scenario -m wait under libmemd, attached to memd; timed:
#                 the whole `memctl free-os-memory PID` command (exec, connect,
#                 HELLO, memd's relay, the agent's cycle, the reply)
#   in-process    seed-scenario -m memd: memd_free_os_memory() called inside
#   glibc trim    seed-scenario -m trim without libmemd: malloc_trim(0)
#   go            seed.go: debug.FreeOSMemory()
# Ratios are medians against the in-process call.
#
# Environment: MEMD_BUILD (default ./build), GO (default: go).
set -euo pipefail

build=${MEMD_BUILD:-./build}
entries=1048576
repeat=3
threads=4
while [ $# -gt 0 ]; do
        case $1 in
        --quick) entries=262144; repeat=1 ;;
        --repeat) repeat=$2; shift ;;
        --threads) threads=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-memctl-free.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

here=$(cd "$(dirname "$0")" && pwd)
seed=$build/tests/bench/seed-scenario
memd=$build/memd/memd
memctl=$build/ctl/memctl
. "$here/common.sh"
bench_setup run-memctl-free.sh "$seed"
[ -x "$memd" ] && [ -x "$memctl" ] || { echo "run-memctl-free.sh: memd/memctl not built under $build" >&2; exit 2; }

sock=$tmp/memd.sock
"$memd" --socket "$sock" --log-target stderr --request-timeout 60 2>"$tmp/memd.log" &
memd_pid=$!
trap 'kill "$memd_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

goseed=
if command -v "${GO:-go}" >/dev/null &&
        env HOME="$tmp" GOCACHE="$tmp/gocache" GOPATH="$tmp/gopath" GOPROXY=off GOFLAGS= GO111MODULE=off \
                "${GO:-go}" build -o "$tmp/seed-go" "$here/seed.go" 2>"$tmp/go-build.log"; then
        goseed=$tmp/seed-go
fi

args="-t $threads -k -n $entries"
results=$tmp/results
: >"$results"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
for ((r = 0; r < repeat; r++)); do
        # memctl, end to end.
        LD_PRELOAD=$libmemd MEMD_SOCKET=$sock "$seed" $args -m wait >"$tmp/wait.out" &
        pid=$!
        for _ in $(seq 1200); do grep -q '^waiting' "$tmp/wait.out" && break; sleep 0.1; done
        for _ in $(seq 100); do "$memctl" --socket "$sock" status "$pid" >/dev/null 2>&1 && break; sleep 0.05; done
        sleep 1.2 # one report: memd has MemStats
        t0=$(date +%s%N)
        "$memctl" --socket "$sock" --json free-os-memory "$pid" >"$tmp/free.json"
        t1=$(date +%s%N)
        kill -TERM "$pid"
        wait "$pid" || true
        python3 - "$tmp/free.json" "$(((t1 - t0) / 1000))" >>"$results" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("memctl", int(sys.argv[2]) / 1000.0, d["rss_before_bytes"] >> 10, d["rss_after_bytes"] >> 10)
PY
        # The baselines, same program, same run.
        for v in "in-process|LD_PRELOAD=$libmemd MEMD_SOCKET=off|-m memd" "glibc trim||-m trim"; do
                name=${v%%|*}; rest=${v#*|}; envs=${rest%%|*}; m=${rest#*|}
                # shellcheck disable=SC2086
                line=$(env $envs "$seed" $args $m)
                python3 -c 'import sys; kv=dict(w.split("=",1) for w in sys.argv[2].split()[1:]); print(sys.argv[1].replace(" ","_"), kv["op_ms"], kv["rss_free_kib"], kv["rss_after_kib"])' "$name" "$line" >>"$results"
        done
        if [ -n "$goseed" ]; then
                line=$("$goseed" $args)
                python3 -c 'import sys; kv=dict(w.split("=",1) for w in sys.argv[1].split()[1:]); print("go", kv["op_ms"], kv["rss_free_kib"], kv["rss_after_kib"])' "$line" >>"$results"
        fi
done

echo "memctl free-os-memory, seed scenario: $entries entries x ~1.1 KB, $threads threads, one entry kept, $repeat run(s), $(nproc) CPUs"
python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, ms, before, after = line.split()
    rows.setdefault(name, []).append((float(ms), int(before), int(after)))
def med(xs):
    xs = sorted(xs); n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
base = med([r[0] for r in rows["in-process"]])
print("%-12s %10s %10s %12s %12s" % ("variant", "ms", "x in-proc", "RSS before", "RSS after"))
for name in ("memctl", "in-process", "glibc_trim", "go"):
    if name not in rows:
        continue
    ms = med([r[0] for r in rows[name]])
    print("%-12s %10.1f %9.2fx %9.1f MiB %9.1f MiB" % (name.replace("_", " "), ms, ms / base,
          med([r[1] for r in rows[name]]) / 1024, med([r[2] for r in rows[name]]) / 1024))
print("memctl = the whole command, exec to exit; the others = the call inside the process")
PY
