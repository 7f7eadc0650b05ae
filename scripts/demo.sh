#!/bin/bash
# demo.sh - the main job, end to end on this machine: build, then run real programs under libmemd and show what it measures.
#
# memd (the daemon) and memctl arrive with the next issue; until then the demo
# shows libmemd alone, which is also its embedded default: gctrace lines,
# exact MemStats, a heap profile read by `go tool pprof`, and free-os-memory on
# the seed's scenario (a 1 GiB cache emptied).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
meson setup build-demo -Dbuildtype=debugoptimized >/dev/null 2>&1 || meson setup --reconfigure build-demo >/dev/null
ninja -C build-demo >/dev/null

lib=$PWD/build-demo/libmemd/libmemd.so
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HOME=$tmp GOCACHE=$tmp/gocache PPROF_TMPDIR=$tmp

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. A real program (python3) under LD_PRELOAD=libmemd.so: it asks for its heap profile mid-run"
# The script reaches memd_write_heap_profile() through ctypes while its cache
# is alive (a profile written at exit would show what is left after
# Python's own teardown); the same call works from C with dlsym.
cat > "$tmp/work.py" <<'PY'
import ctypes, json, sys
cache = {i: json.dumps({"id": i, "payload": "x" * 900}) for i in range(60000)}
kept = [bytearray(4096) for _ in range(5000)]
memd = ctypes.CDLL(None)
memd.memd_write_heap_profile.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
r = memd.memd_write_heap_profile(sys.argv[1].encode(), -1, 0)
print("python: profile written" if r == 0 else f"python: memd_write_heap_profile: {r}")
PY
# Debian's interpreter itself (not a version manager's shell shim).
python=/usr/bin/python3
LD_PRELOAD=$lib MEMD_PROFILE_RATE=64K $python "$tmp/work.py" "$tmp/python.pb.gz"
echo "\$ go tool pprof -top -sample_index=inuse_space python.pb.gz"
go tool pprof -top -nodecount=12 -sample_index=inuse_space "$tmp/python.pb.gz" 2>/dev/null
echo "\$ go tool pprof -top -cum -sample_index=alloc_space python.pb.gz   (who allocated, freed or not)"
go tool pprof -top -cum -nodecount=10 -sample_index=alloc_space "$tmp/python.pb.gz" 2>/dev/null | tail -n +6

say "2. The same, in Go's legacy text format (/debug/pprof/heap?debug=1 shape) with the MemStats trailer"
LD_PRELOAD=$lib MEMD_PROFILE_RATE=64K $python "$tmp/work.py" "$tmp/python.txt" >/dev/null
head -n 1 "$tmp/python.txt"
grep -E '^# (HeapAlloc|HeapSys|HeapIdle|HeapInuse|HeapReleased|HeapObjects|Mallocs|Frees|RSS) ' "$tmp/python.txt"

say "3. The seed's scenario: a 1 GiB cache filled by 4 threads, one entry kept (pins the heap); its reclaimer empties it inside memd_free_os_memory(), gctrace on"
MEMD_DEBUG=gctrace=1 LD_PRELOAD=$lib build-demo/tests/progs/seed -t 4 -k -m reclaimer 2>&1
echo
echo "The same without libmemd: the program frees the cache, then glibc's malloc_trim(0) (fastbins on):"
build-demo/tests/progs/seed -t 4 -k 2>&1 | tail -n 2

say "Done.  See README.md for libmemd's environment variables and docs/ for how each figure is measured."
