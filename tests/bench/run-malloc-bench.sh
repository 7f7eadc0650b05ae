#!/bin/bash
# run-malloc-bench.sh - malloc/free overhead of libmemd and of jemalloc's profiler, as medians of per-round ratios to plain glibc.
#
# usage: bash tests/bench/run-malloc-bench.sh [--quick] [--rounds N] [--pairs N] [--callgrind-pairs N]
#                                             [--no-callgrind] [--cold]
#
# One round runs every variant once, for 1 and for 2 threads, in an order
# rotated by one each round (so no variant always runs right after another).
# Each variant's per-round figure is divided by plain glibc's in the same
# round; the table gives the median of those ratios and a 95% interval for
# the median from the order statistics.  The machine drifts by tens of
# percent within seconds, so only ratios taken close together mean anything.
# A second plain glibc run (A2) is a variant too: its ratio is the noise floor.
# Then callgrind counts instructions per pair (user space, 1 thread), which
# no drift touches.  README.md in this directory explains every figure.
#
# Environment: MEMD_BUILD (default ./build), JEMALLOC (path to
# libjemalloc.so.2; searched for if unset).

set -euo pipefail

build=${MEMD_BUILD:-./build}
rounds=30
pairs=4000000
cg_pairs=1000000
callgrind=1
cg_only=        # names of the variants to count instructions for; empty: all
cold=

while [ $# -gt 0 ]; do
        case $1 in
        --quick) rounds=4; pairs=1000000; cg_pairs=50000; cg_only="A B E" ;;
        --rounds) rounds=$2; shift ;;
        --pairs) pairs=$2; shift ;;
        --callgrind-pairs) cg_pairs=$2; shift ;;
        --no-callgrind) callgrind=0 ;;
        --cold) cold=-C ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run-malloc-bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
done

bench=$build/tests/bench/malloc-bench
. "$(dirname "$0")/common.sh"
bench_setup run-malloc-bench.sh "$bench"

# name|label|environment (env(1) words); A must be first.
variants=(
        "A|glibc|"
        "A2|glibc again (noise floor)|"
        "B|libmemd, default rate 512K|LD_PRELOAD=$libmemd"
        "E|libmemd, MEMD_PROFILE_RATE=0|LD_PRELOAD=$libmemd MEMD_PROFILE_RATE=0"
        "G|libmemd, fastbins kept|LD_PRELOAD=$libmemd MEMD_DEBUG=fastbins=1"
        "F|glibc, mxfast=0 (no fastbins)|GLIBC_TUNABLES=glibc.malloc.mxfast=0"
)
if [ -n "$jemalloc" ]; then
        variants+=(
                "D|jemalloc|LD_PRELOAD=$jemalloc"
                "C|jemalloc, prof:true,lg_prof_sample:19|LD_PRELOAD=$jemalloc MALLOC_CONF=prof:true,lg_prof_sample:19"
        )
else
        echo "note: libjemalloc.so.2 not found (apt-get install libjemalloc2, or set JEMALLOC): jemalloc variants skipped" >&2
fi
nvar=${#variants[@]}

with_variant() {        # $1 variant index, then a command to run in its environment
        local spec=${variants[$1]} envs
        shift
        envs=${spec#*|}; envs=${envs#*|}
        # shellcheck disable=SC2086 # envs is a list of NAME=value words
        env $envs "$@"
}

field() {               # $1 key, stdin: one malloc-bench line
        tr ' ' '\n' | sed -n "s/^$1=//p"
}

echo "malloc-bench: $rounds rounds x $nvar variants x 1 and 2 threads, $pairs pairs per thread per run${cold:+, cold glibc thresholds (-C)}, $(nproc) CPUs, $(uname -r)"
echo "libmemd: $libmemd (built $(date -r "$libmemd" '+%F %T'), sha256 $(sha256sum "$libmemd" | cut -c1-12))"
echo "jemalloc: ${jemalloc:-none}"
start=$SECONDS
results=$tmp/results
: >"$results"
for ((r = 0; r < rounds; r++)); do
        for threads in 1 2; do
                for ((k = 0; k < nvar; k++)); do
                        i=$(((k + r) % nvar))
                        name=${variants[$i]%%|*}
                        line=$(with_variant "$i" "$bench" -t "$threads" -n "$pairs" -s "$((r + 1))" $cold)
                        echo "$r $threads $name $(field ns_per_pair <<<"$line") $(field cpu_ns_per_pair <<<"$line") $(field sys_ns_per_pair <<<"$line")" >>"$results"
                done
        done
        [ -t 2 ] && printf '\rround %d/%d done (%ds)' "$((r + 1))" "$rounds" "$((SECONDS - start))" >&2
done
[ -t 2 ] && echo >&2

labels=$tmp/labels
for spec in "${variants[@]}"; do
        name=${spec%%|*}; rest=${spec#*|}
        echo "$name|${rest%%|*}"
done >"$labels"

python3 - "$results" "$labels" <<'EOF'
import sys, math
from collections import defaultdict

results, labels_path = sys.argv[1], sys.argv[2]
labels = [l.rstrip("\n").split("|", 1) for l in open(labels_path)]
data = defaultdict(dict)        # (round, threads) -> name -> (wall, cpu, sys)
for line in open(results):
    r, t, name, wall, cpu, sys_ = line.split()
    data[(int(r), int(t))][name] = (float(wall), float(cpu), float(sys_))

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

def median_ci(xs):
    """95% interval for the median from order statistics: the widest-inward
    (j, n+1-j) with P(Bin(n, 1/2) < j) <= 2.5%.  Returns lo, hi, coverage."""
    xs = sorted(xs)
    n = len(xs)
    cdf = lambda k: sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    j = 0
    while j + 1 <= n and cdf(j) <= 0.025:      # j = order statistic (1-based)
        j += 1
    if j == 0:                                  # too few rounds for 95%: min..max
        return xs[0], xs[-1], 1 - 2 / 2 ** n
    return xs[j - 1], xs[n - j], 1 - 2 * cdf(j - 1)

def table(metric, title):
    print()
    print(title)
    print(f"  {'variant':<44} {'thr':>3} {'ns/pair':>8} {'ratio':>6}  {'95% CI':<13} {'cover':>5}  {'range of ratios':<13}")
    for t in (1, 2):
        rounds = [k for k in data if k[1] == t]
        for name, label in labels:
            if name == "A":
                ns = median(data[k]["A"][metric] for k in rounds)
                print(f"  {'A  ' + label:<44} {t:>3} {ns:>8.2f} {'1':>6}  {'(reference)':<13}")
                continue
            ratios = [data[k][name][metric] / data[k]["A"][metric] for k in rounds if name in data[k]]
            ns = median(data[k][name][metric] for k in rounds if name in data[k])
            lo, hi, cov = median_ci(ratios)
            print(f"  {name + ' ' * (3 - len(name)) + label:<44} {t:>3} {ns:>8.2f} {median(ratios):>6.3f}  "
                  f"{lo:.3f}-{hi:.3f}   {cov * 100:>4.0f}%  {min(ratios):.2f}-{max(ratios):.2f}")
        if any(n == "C" for n, _ in labels):
            ratios = [data[k]["C"][metric] / data[k]["D"][metric] for k in rounds]
            lo, hi, cov = median_ci(ratios)
            print(f"  {'C/D jemalloc profiling over its own base':<44} {t:>3} {'':>8} {median(ratios):>6.3f}  "
                  f"{lo:.3f}-{hi:.3f}   {cov * 100:>4.0f}%  {min(ratios):.2f}-{max(ratios):.2f}")
        ratios = [data[k]["B"][metric] / data[k]["G"][metric] for k in rounds]
        lo, hi, cov = median_ci(ratios)
        print(f"  {'B/G libmemd: fastbins off vs kept':<44} {t:>3} {'':>8} {median(ratios):>6.3f}  "
              f"{lo:.3f}-{hi:.3f}   {cov * 100:>4.0f}%  {min(ratios):.2f}-{max(ratios):.2f}")

n = len({k[0] for k in data})
print(f"\nRatios: median over {n} rounds of (variant / plain glibc in the same round); "
      "95% CI of that median from order statistics (cover = its exact coverage).")
table(1, "CPU time per pair (each thread's user+kernel time; not counting time descheduled) - the primary figure:")
table(0, "Wall time per pair (timed phase / pairs per thread; sensitive to other load on the machine):")
print()
print("Kernel share of glibc's CPU time (median sys_ns/cpu_ns, plain glibc): " + ", ".join(
    f"{t} thread{'s' if t > 1 else ''} {median(data[k]['A'][2] / data[k]['A'][1] for k in data if k[1] == t) * 100:.0f}%"
    for t in (1, 2)))
EOF
echo "(malloc-bench timing: $((SECONDS - start)) s)"

[ "$callgrind" = 1 ] || exit 0
if ! command -v valgrind >/dev/null; then
        echo "note: valgrind not installed: no instruction counts" >&2
        exit 0
fi

# Instructions per pair: callgrind counts only inside replace_loop (the
# timed pairs and the warm-up pairs, which the output line gives), callees
# included.  User space only, 1 thread.  One more variant here, too costly
# to time in every round: libmemd on top of jemalloc (libmemd first in
# LD_PRELOAD, so that it is the malloc the program calls).
[ -n "$jemalloc" ] && variants+=("H|libmemd over jemalloc, default rate|LD_PRELOAD=$libmemd:$jemalloc")
echo
echo "Instructions per malloc/free pair (valgrind --tool=callgrind --toggle-collect=replace_loop, 1 thread, $cg_pairs pairs):"
printf '  %-44s %10s %9s %11s\n' variant instr/pair "vs glibc" "vs jemalloc"
declare -A per
for ((i = 0; i < ${#variants[@]}; i++)); do
        spec=${variants[$i]}; name=${spec%%|*}; label=${spec#*|}; label=${label%%|*}
        [ "$name" = A2 ] && continue
        if [ -n "$cg_only" ] && [[ " $cg_only " != *" $name "* ]]; then
                continue
        fi
        with_variant "$i" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" --toggle-collect=replace_loop \
                "$bench" -t 1 -n "$cg_pairs" $cold >"$tmp/cg.stdout" 2>"$tmp/cg.stderr" || true
        ir=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$tmp/cg.stderr" | tail -n 1)
        warmup=$(field warmup <"$tmp/cg.stdout")
        if [ -z "$ir" ] || [ -z "$warmup" ]; then
                printf '  %-44s %10s\n' "$name $label" "(callgrind failed: $(tail -n 1 "$tmp/cg.stderr"))"
                continue
        fi
        per[$name]=$(python3 -c "print(f'{$ir / ($cg_pairs + $warmup):.1f}')")
        vs_glibc=$(python3 -c "print(f'{${per[$name]} / ${per[A]}:.3f}')")
        vs_je=
        case $name in C|H) [ -n "${per[D]:-}" ] && vs_je=$(python3 -c "print(f'{${per[$name]} / ${per[D]}:.3f}')") ;; esac
        printf '  %-44s %10s %9s %11s\n' "$name$(printf '%*s' $((3 - ${#name})) '')$label" "${per[$name]}" "$vs_glibc" "$vs_je"
done
echo "(total: $((SECONDS - start)) s)"
