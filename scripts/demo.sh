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

say "1. A real program (python3) under LD_PRELOAD=libmemd.so, heap profile written at exit"
cat > "$tmp/work.py" <<'PY'
import json
cache = {i: json.dumps({"id": i, "payload": "x" * 900}) for i in range(60000)}
kept = [bytearray(4096) for _ in range(5000)]
del cache
print("python: done,", len(kept), "buffers kept")
PY
LD_PRELOAD=$lib MEMD_PROFILE_RATE=64K MEMD_MEMPROFILE="$tmp/python.%p.pb.gz" python3 "$tmp/work.py"
prof=$(ls "$tmp"/python.*.pb.gz)
echo "\$ go tool pprof -top -sample_index=inuse_space python3 $(basename "$prof")"
go tool pprof -top -nodecount=12 -sample_index=inuse_space "$(command -v python3)" "$prof" 2>/dev/null
echo "\$ go tool pprof -top -sample_index=alloc_space  (who allocated, freed or not)"
go tool pprof -top -nodecount=8 -sample_index=alloc_space "$(command -v python3)" "$prof" 2>/dev/null | tail -n +6

say "2. The same program, Go's legacy text profile (/debug/pprof/heap?debug=1 shape) with the MemStats trailer"
LD_PRELOAD=$lib MEMD_MEMPROFILE="$tmp/python.%p.txt" python3 "$tmp/work.py" >/dev/null
txt=$(ls "$tmp"/python.*.txt)
head -n 1 "$txt"
grep -E '^# (HeapAlloc|HeapSys|HeapIdle|HeapInuse|HeapReleased|HeapObjects|Mallocs|Frees|RSS) ' "$txt"

say "3. The seed's scenario: a 1 GiB cache of 1 KiB entries filled by 4 threads, one entry kept (pins the heap), then memd_free_os_memory() with gctrace on"
MEMD_DEBUG=gctrace=1 LD_PRELOAD=$lib build-demo/tests/progs/seed -t 4 -k 2>&1
echo
echo "The same without libmemd (glibc's malloc_trim(0), fastbins on):"
build-demo/tests/progs/seed -t 4 -k 2>&1 | tail -n 2

say "Done.  See README.md for libmemd's environment variables and docs/ for how each figure is measured."
