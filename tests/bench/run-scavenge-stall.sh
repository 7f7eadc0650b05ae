#!/bin/bash
# run-scavenge-stall.sh - issue 5's benchmark: how long the scavenge (memd_free_os_memory) of an emptied 1 GiB cache stalls the application's malloc/free, per allocator, against a baseline window of the same run.
#
# usage: bash tests/bench/run-scavenge-stall.sh [--quick] [--rounds N] [--mib M]
#                                               [--fill N] [--timers K] [--window MS]
#
#   --rounds N   runs of each variant, the order rotated each round; the table
#                shows medians (default 3)
#   --mib M      the cache's size (1024)
#   --fill N     threads that fill and empty it: N arenas (4)
#   --timers K   threads timing malloc/free pairs meanwhile (2)
#   --window MS  the baseline window without scavenge (1000); the window
#                after the scavenge is a quarter of it
#   --quick      --rounds 1 --mib 256: a smoke run, ~15 s
#
# scavenge-stall (scavenge-stall.c) fills the cache, empties it but for one
# entry per thread (it pins its heap's top), then K threads time every
# malloc/free pair: first a baseline window, then while one thread scavenges.
# Variants (same binary, only the environment changes):
#   glibc            plain glibc, malloc_trim(0)
#   glibc mxfast0    GLIBC_TUNABLES=glibc.malloc.mxfast=0, malloc_trim(0)
#   memd fastbins    LD_PRELOAD=libmemd.so MEMD_DEBUG=fastbins=1, memd_free_os_memory()
#   memd             LD_PRELOAD=libmemd.so (its default: fastbins off), memd_free_os_memory()
#   memd+jemalloc    libmemd over jemalloc (its default decay: it returns most
#                    of the memory by itself before any scavenge)
#   memd+jemalloc nodecay  the same with MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1:
#                    everything is left to the scavenge's purge
#
# Environment: MEMD_BUILD (default ./build), JEMALLOC.
set -euo pipefail
export LC_ALL=C

build=${MEMD_BUILD:-./build}
rounds=3
mib=1024
fill=4
timers=2
window=1000
while [ $# -gt 0 ]; do
        case $1 in
        --quick) rounds=1; mib=256 ;;
        --rounds) rounds=$2; shift ;;
        --mib) mib=$2; shift ;;
        --fill) fill=$2; shift ;;
        --timers) timers=$2; shift ;;
        --window) window=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-scavenge-stall.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

here=$(cd "$(dirname "$0")" && pwd)
bench=$build/tests/bench/scavenge-stall
. "$here/common.sh"
bench_setup run-scavenge-stall.sh "$bench"

# name|environment (env(1) words)|scavenge
variants=(
        "glibc||trim"
        "glibc mxfast0|GLIBC_TUNABLES=glibc.malloc.mxfast=0|trim"
        "memd fastbins|LD_PRELOAD=$libmemd MEMD_DEBUG=fastbins=1|memd"
        "memd|LD_PRELOAD=$libmemd|memd"
)
# libmemd first: it forwards to the next definition, jemalloc's.
if [ -n "$jemalloc" ]; then
        variants+=("memd+jemalloc|LD_PRELOAD=$libmemd:$jemalloc|memd")
        variants+=("memd+jemalloc nodecay|LD_PRELOAD=$libmemd:$jemalloc MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1|memd")
else
        echo "note: no libjemalloc.so.2 (set JEMALLOC), no jemalloc rows" >&2
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results=$tmp/results
: >"$results"
n=${#variants[@]}
for ((r = 0; r < rounds; r++)); do
        for ((i = 0; i < n; i++)); do
                v=${variants[$(((i + r) % n))]}
                name=${v%%|*}; rest=${v#*|}; envs=${rest%%|*}; via=${rest#*|}
                [ -t 2 ] && printf '\r%-60s' "round $((r + 1))/$rounds: $name" >&2
                # shellcheck disable=SC2086 # a word list on purpose
                if env $envs "$bench" -t "$fill" -k "$timers" -m "$mib" -w "$window" -v "$via" >"$tmp/out" 2>"$tmp/err"; then
                        sed "s/^/$name|/" "$tmp/out" >>"$results"
                        echo "$name|end" >>"$results"
                else
                        echo "run-scavenge-stall.sh: $name failed: $(tail -n 1 "$tmp/err")" >&2
                fi
        done
done
[ -t 2 ] && printf '\r%-70s\r' '' >&2
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

src=$(sed -n 's/.*"source": *"\([^"]*\)".*/\1/p' "$build/meson-info/meson-info.json" 2>/dev/null | head -1 || true)
echo "scavenge stall: $mib MiB cache over $fill arenas, $timers timing threads, $rounds round(s), ${src:-?} at $(git -C "${src:-$here}" describe --always --dirty 2>/dev/null || echo '?'), $(nproc) CPUs, load average $load_before before, $load_after after"
python3 - "$results" "${variants[@]}" <<'PY'
import sys

path, names = sys.argv[1], [v.split("|", 1)[0] for v in sys.argv[2:]]
runs, cur = {}, {}
for line in open(path):
    name, text = line.rstrip("\n").split("|", 1)
    if text == "end":
        runs.setdefault(name, []).append(cur.pop(name))
        continue
    d = dict(w.split("=", 1) for w in text.split()[1:] if "=" in w)
    r = cur.setdefault(name, {})
    if text.startswith("phase "):
        r[d["name"]] = {k: float(v) for k, v in d.items() if k != "name"}
    else:
        r["run"] = d

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

def med(rs, f):
    return median([f(r) for r in rs])

print()
print("Scavenge: its duration and RSS (medians over the rounds)")
print("%-22s %5s %10s %10s %10s %12s" % ("variant", "runs", "scav ms", "RSS free", "RSS after", "released"))
for name in names:
    rs = runs.get(name)
    if not rs:
        continue
    print("%-22s %5d %10.1f %9.0fM %9.0fM %11.0fM" % (
        name, len(rs), med(rs, lambda r: float(r["run"]["scavenge_ms"])),
        med(rs, lambda r: float(r["run"]["rss_free_kib"]) / 1024),
        med(rs, lambda r: float(r["run"]["rss_after_kib"]) / 1024),
        med(rs, lambda r: float(r["run"]["released_bytes"]) / 2**20)))

print()
print("Malloc/free pairs, us: baseline window vs during the scavenge (medians over the rounds; ratio = scavenge / baseline, per run)")
print("%-22s %8s %8s %8s %8s %9s %9s %8s %9s %8s" % (
    "variant", "base p99.9", "scav p99.9", "ratio", "base max", "scav max", "ratio", "blocked", "max blkd", ">10ms"))
for name in names:
    rs = runs.get(name)
    if not rs:
        continue
    print("%-22s %10.2f %10.2f %7.2fx %8.0f %9.0f %8.2fx %8.0f %9.0f %8.0f" % (
        name, med(rs, lambda r: r["base"]["p999_us"]), med(rs, lambda r: r["scavenge"]["p999_us"]),
        med(rs, lambda r: r["scavenge"]["p999_us"] / r["base"]["p999_us"]),
        med(rs, lambda r: r["base"]["max_us"]), med(rs, lambda r: r["scavenge"]["max_us"]),
        med(rs, lambda r: r["scavenge"]["max_us"] / r["base"]["max_us"]),
        med(rs, lambda r: r["scavenge"]["blocked"]), med(rs, lambda r: r["scavenge"]["max_blocked_us"]),
        med(rs, lambda r: r["scavenge"]["over_10ms"])))
print("blocked / max blkd: pairs over 1 ms during the scavenge in which the thread switched voluntarily")
print("(it slept on a lock: the allocator's, held by the scavenge), and the longest of them.  max: any")
print("stall, preemptions included.  Worst of the runs, max blkd:", ", ".join(
    "%s %.0f" % (n, max(r["scavenge"]["max_blocked_us"] for r in runs[n])) for n in names if runs.get(n)))
PY
