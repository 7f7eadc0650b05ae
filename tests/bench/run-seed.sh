#!/bin/bash
# run-seed.sh - the seed's scenario (a 1 GiB cache of 1 KiB entries, emptied): RSS and time to give memory back, libmemd vs glibc vs Go.
#
# usage: bash tests/bench/run-seed.sh [--quick] [--entries N] [--repeat N]
#
# Cases: 1 filling thread; 4 filling threads (4 more glibc arenas); each of
# those with one entry left alive (it pins the top of its heap).  Variants:
#   memd          LD_PRELOAD=libmemd.so, memd_free_os_memory() (libmemd's default: fastbins off)
#   memd fastbins same with MEMD_DEBUG=fastbins=1 (glibc's fastbins kept)
#   memd+jemalloc libmemd over jemalloc: memd_free_os_memory() purges jemalloc's arenas
#   glibc trim    plain glibc, malloc_trim(0)
#   glibc mxfast0 GLIBC_TUNABLES=glibc.malloc.mxfast=0, malloc_trim(0)
#   go            seed.go built here, debug.FreeOSMemory()
# --repeat N runs each cell N times (variants alternating) and shows medians.
#
# Environment: MEMD_BUILD (default ./build), JEMALLOC, GO (default: go).

set -euo pipefail

build=${MEMD_BUILD:-./build}
entries=1048576
repeat=1

while [ $# -gt 0 ]; do
        case $1 in
        --quick) entries=262144 ;;
        --entries) entries=$2; shift ;;
        --repeat) repeat=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-seed.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

here=$(cd "$(dirname "$0")" && pwd)
seed=$build/tests/bench/seed-scenario
. "$(dirname "$0")/common.sh"
bench_setup run-seed.sh "$seed"

# Go: built here, offline, with throw-away caches.
go=${GO:-go}
goseed=
if command -v "$go" >/dev/null; then
        if env HOME="$tmp" GOCACHE="$tmp/gocache" GOPATH="$tmp/gopath" GOPROXY=off GOFLAGS= GO111MODULE=off \
                "$go" build -o "$tmp/seed-go" "$here/seed.go" 2>"$tmp/go-build.log"; then
                goseed=$tmp/seed-go
        else
                echo "note: go build seed.go failed, no Go rows:" >&2
                cat "$tmp/go-build.log" >&2
        fi
else
        echo "note: no Go toolchain ($go), no Go rows (apt-get install golang-go)" >&2
fi

# name|environment (env(1) words)|program and its -m
variants=(
        "memd|LD_PRELOAD=$libmemd|$seed -m memd"
        "memd fastbins|LD_PRELOAD=$libmemd MEMD_DEBUG=fastbins=1|$seed -m memd"
        "glibc trim||$seed -m trim"
        "glibc mxfast0|GLIBC_TUNABLES=glibc.malloc.mxfast=0|$seed -m trim"
)
# libmemd first: the program's malloc must resolve to libmemd, which then
# forwards to the next definition, jemalloc's.
[ -n "$jemalloc" ] && variants+=("memd+jemalloc|LD_PRELOAD=$libmemd:$jemalloc|$seed -m memd")
[ -n "$goseed" ] && variants+=("go||$goseed")

cases=(
        "1 thread|-t 1"
        "4 threads|-t 4"
        "1 thread, 1 kept|-t 1 -k"
        "4 threads, 1 kept|-t 4 -k"
)

echo "seed scenario: $entries entries x (40 B node + ~20 B key + 1024 B value), ${#cases[@]} cases x ${#variants[@]} variants x $repeat, $(nproc) CPUs, $(go version 2>/dev/null | cut -d' ' -f3 || true)"
echo "libmemd: $libmemd (built $(date -r "$libmemd" '+%F %T'), sha256 $(sha256sum "$libmemd" | cut -c1-12))"
start=$SECONDS
results=$tmp/results
: >"$results"
for c in "${cases[@]}"; do
        label=${c%%|*}; args=${c#*|}
        for ((r = 0; r < repeat; r++)); do
                for v in "${variants[@]}"; do
                        name=${v%%|*}; rest=${v#*|}; envs=${rest%%|*}; prog=${rest#*|}
                        # shellcheck disable=SC2086 # word lists on purpose
                        if line=$(env $envs $prog $args -n "$entries" 2>"$tmp/stderr"); then
                                echo "$label|$name|$line" >>"$results"
                        else
                                echo "$label|$name|failed: $(tail -n 1 "$tmp/stderr")" >>"$results"
                        fi
                        [ -t 2 ] && printf '\r%-60s (%ds)' "$label: $name" "$((SECONDS - start))" >&2
                done
        done
done
[ -t 2 ] && printf '\r%-70s\r' '' >&2

python3 - "$results" <<'EOF'
import sys
rows = {}
order = []
for line in open(sys.argv[1]):
    case, name, out = line.rstrip("\n").split("|", 2)
    key = (case, name)
    if key not in rows:
        rows[key] = []
        order.append(key)
    if out.startswith("failed"):
        rows[key].append(out)
        continue
    kv = dict(w.split("=", 1) for w in out.split()[1:])
    via = kv.pop("via")
    run = {k: float(v) for k, v in kv.items()}
    run["via"] = via
    rows[key].append(run)

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

def mib(kib):
    return f"{kib / 1024:.1f} MiB"

print()
print(f"{'case':<18} {'variant':<14} {'RSS filled':>11} {'RSS freed':>11} {'free ms':>8} {'give-back ms':>12} {'RSS after':>11} {'released':>11}")
last = None
for key in order:
    case, name = key
    runs = [r for r in rows[key] if isinstance(r, dict)]
    if last is not None and case != last:
        print()
    last = case
    if not runs:
        print(f"{case:<18} {name:<14} {rows[key][0]}")
        continue
    m = {k: median(r[k] for r in runs) for k in runs[0] if k != "via"}
    released = "-" if runs[0]["via"] == "trim" else mib(m['released_bytes'] / 1024)
    print(f"{case:<18} {name:<14} {mib(m['rss_fill_kib']):>11} {mib(m['rss_free_kib']):>11} {m['free_ms']:>8.1f} "
          f"{m['op_ms']:>12.1f} {mib(m['rss_after_kib']):>11} {released:>11}")
print()
print("RSS filled: after the fill.  RSS freed: after the program freed every entry (Go: dropped the maps, no GC yet).")
print("free ms: the program's own frees.  give-back ms: memd_free_os_memory() / malloc_trim(0) / debug.FreeOSMemory()")
print("(Go's includes the GC that finds the garbage).  released: what memd_free_os_memory() returned (Go: HeapReleased")
print("after minus before; glibc trim: -, malloc_trim does not say).  Medians if --repeat > 1.")
EOF
echo "(total: $((SECONDS - start)) s)"
