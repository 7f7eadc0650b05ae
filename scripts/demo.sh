#!/bin/bash
# demo.sh - the main job, end to end on this machine: build, start memd on a private socket, run real programs under libmemd, and drive them with memctl.
#
# memd runs in the foreground on $tmp/memd.sock (no root, no systemd needed);
# python3 and the seed's cache program run under LD_PRELOAD=libmemd.so and
# attach to it.  Shown: memctl status, status PID, a heap profile read by
# `go tool pprof`, memctl gc, memctl free-os-memory on an emptied cache (RSS
# before -> after), memctl trace, and the lines memd logs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
meson setup build-demo -Dbuildtype=debugoptimized >/dev/null 2>&1 || meson setup --reconfigure build-demo >/dev/null
ninja -C build-demo >/dev/null

lib=$PWD/build-demo/libmemd/libmemd.so
memd=$PWD/build-demo/memd/memd
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
export HOME=$tmp GOCACHE=$tmp/gocache PPROF_TMPDIR=$tmp
export MEMD_SOCKET=$tmp/memd.sock
memctl() { "$PWD/build-demo/ctl/memctl" --socket "$MEMD_SOCKET" "$@"; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "\$ memctl $*"; memctl "$@"; }
# wait_for FILE PATTERN: up to 60 s.
wait_for() {
        for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
        echo "demo: timed out waiting for '$2' in $1" >&2
        cat "$1" >&2
        exit 1
}

say "0. memd, in the foreground on a private socket ($MEMD_SOCKET), with a configuration directory of its own"
# The built-in policy returns idle heap after 30 s; the demo's steps 1-3 act
# by hand first, so memd.conf gives them 10 minutes, and step 4's program a
# policy file of its own (docs/config.md).
mkdir -p "$tmp/memd.d/policy.d"
printf '[Policy]\nIdleTimeout=10min\n' >"$tmp/memd.d/memd.conf"
printf '[Match]\nComm=seed-policy\n\n[Policy]\nIdleMemoryMax=16M\nIdleTimeout=5s\n' >"$tmp/memd.d/policy.d/seed.policy"
echo "\$ cat memd.d/memd.conf memd.d/policy.d/seed.policy"
cat "$tmp/memd.d/memd.conf" "$tmp/memd.d/policy.d/seed.policy"
"$memd" --socket "$MEMD_SOCKET" --config-dir "$tmp/memd.d" --log-target stderr 2>"$tmp/memd.log" &
pids+=($!)
wait_for "$tmp/memd.log" ready
cat "$tmp/memd.log"

say "1. A real program (Debian's python3) under LD_PRELOAD=libmemd.so: builds a cache, writes its heap profile, empties the cache, waits"
# The script reaches memd_write_heap_profile() through ctypes while its cache
# is alive; memctl heap (the daemon's copy, symbolized) is the next issue.
cat > "$tmp/work.py" <<'PY'
import ctypes, json, signal, sys
cache = {i: json.dumps({"id": i, "payload": "x" * 900}) for i in range(300000)}
kept = [bytearray(4096) for _ in range(5000)]
memd = ctypes.CDLL(None)
memd.memd_write_heap_profile.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
r = memd.memd_write_heap_profile(sys.argv[1].encode(), -1, 0)
print("python: profile written" if r == 0 else f"python: memd_write_heap_profile: {r}", flush=True)
cache.clear()
print("python: cache emptied, waiting", flush=True)
signal.sigwait([signal.SIGTERM])
PY
# Debian's interpreter itself (not a version manager's shell shim).
LD_PRELOAD=$lib MEMD_PROFILE_RATE=64K /usr/bin/python3 "$tmp/work.py" "$tmp/python.pb.gz" >"$tmp/py.out" &
py=$!
pids+=("$py")
wait_for "$tmp/py.out" waiting
sleep 1.2 # one report interval: memd has its MemStats
cat "$tmp/py.out"
run status
run status "$py"
echo
echo "\$ go tool pprof -top -sample_index=inuse_space python.pb.gz"
go tool pprof -top -nodecount=12 -sample_index=inuse_space "$tmp/python.pb.gz" 2>/dev/null

echo
echo "\$ memctl heap $py -o memd-heap.pb.gz && go tool pprof -top -nodecount=8 memd-heap.pb.gz   (memd's copy, no help from the process)"
memctl heap "$py" -o "$tmp/memd-heap.pb.gz"
go tool pprof -top -nodecount=8 "$tmp/memd-heap.pb.gz" 2>/dev/null | tail -n +6
echo
run top "$py" --cum -n 12 --sample alloc_space

say "2. memctl trace follows the events; memctl gc and memctl free-os-memory act on the process from outside"
memctl trace >"$tmp/trace.out" 2>/dev/null &
pids+=($!)
sleep 0.3
run gc "$py"
run free-os-memory "$py"
sleep 0.3
echo "\$ memctl trace        (running in the background since before the gc)"
cat "$tmp/trace.out"

say "3. The seed's scenario: a 1 GiB cache filled by 4 threads and emptied by the program (one entry kept: it pins the heap, RSS stays up); memd gives it back"
LD_PRELOAD=$lib build-demo/tests/progs/seed -t 4 -k -m app -w >"$tmp/seed.out" 2>&1 &
seed=$!
pids+=("$seed")
wait_for "$tmp/seed.out" waiting
sleep 1.2
cat "$tmp/seed.out"
run status
run free-os-memory "$seed"
echo
echo "The same program without libmemd, using glibc's malloc_trim(0) itself (fastbins on):"
build-demo/tests/progs/seed -t 4 -k 2>&1 | tail -n 2

say "4. Policies, no memctl call: the same seed program as 'seed-policy' (its policy: IdleTimeout=5s); its emptied cache goes back by itself"
cp build-demo/tests/progs/seed "$tmp/seed-policy"
LD_PRELOAD=$lib "$tmp/seed-policy" -t 4 -k -m app -w >"$tmp/seed-policy.out" 2>&1 &
sp=$!
pids+=("$sp")
wait_for "$tmp/seed-policy.out" waiting
for i in $(seq 9); do
        printf 'after %d s: RSS %s\n' "$i" "$(awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$sp/status")"
        sleep 1
done
memctl status "$sp" | sed -n '/^Policy:/,/^Recent/p' | grep -v '^Recent'

say "5. What memd logged (with --log-target journal, or under systemd, these are journal entries with MEMD_* fields)"
cat "$tmp/memd.log"

say "Done.  README.md lists memctl's commands and libmemd's environment; docs/ says how each figure is measured."
