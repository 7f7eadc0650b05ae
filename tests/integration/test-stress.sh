#!/bin/bash
# test-stress.sh - multi-threaded malloc-family stress with fork, under LD_PRELOAD and linked with -lmemd.
#
# stress checks contents, alignment and usable sizes of every block, forks
# from threads while others allocate, and (when libmemd is there) that
# HeapObjects/HeapAlloc are exact: live blocks at a quiescent point, back to
# the baseline when everything is freed.
. "$(dirname "$0")/common.sh"
need_prog stress stress-linked

# meson test sets MALLOC_PERTURB_: glibc then fills every block on malloc and
# free, which triples the run time here.  One run keeps it on purpose (it
# catches reads of freed or uninitialised memory, libmemd's included).
unset MALLOC_PERTURB_
iters=${STRESS_ITERATIONS:-10000}
failed=0

run() {
        local name=$1; shift
        echo "== $name: $*"
        local rc=0
        timed "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
        sed 's/^/   /' "$tmp/out"
        echo "   ($elapsed s)"
        if [ "$rc" -ne 0 ]; then
                echo "FAIL [$name]: exit $rc" >&2
                head -30 "$tmp/err" | sed 's/^/   /' >&2
                failed=$((failed + 1))
                return 0
        fi
        if [ -s "$tmp/err" ]; then
                echo "FAIL [$name]: unexpected stderr:" >&2
                head -30 "$tmp/err" | sed 's/^/   /' >&2
                failed=$((failed + 1))
                return 0
        fi
        case $name in
        plain) grep -q 'libmemd absent' "$tmp/out" || { echo "FAIL [$name]: libmemd found without it" >&2; failed=$((failed + 1)); } ;;
        *)
                grep -q 'libmemd present' "$tmp/out" || { echo "FAIL [$name]: libmemd not found by dlsym" >&2; failed=$((failed + 1)); return 0; }
                # dlsym finds libmemd's API wherever it sits in LD_PRELOAD;
                # only its counters show that the program's malloc reaches it
                # (an allocator ahead of it in the list would take every call).
                local mallocs allocs
                mallocs=$(sed -nE 's/^stress: after free: .*Mallocs \+([0-9]+),.*/\1/p' "$tmp/out")
                allocs=$(sed -nE 's/^stress: ([0-9]+) allocations, .*/\1/p' "$tmp/out")
                if [ -z "$mallocs" ] || [ -z "$allocs" ] || [ "$allocs" -eq 0 ] || [ "$mallocs" -lt "$allocs" ]; then
                        echo "FAIL [$name]: libmemd did not see the program's allocations (Mallocs +${mallocs:-?} for ${allocs:-?} allocations)" >&2
                        failed=$((failed + 1))
                fi
                ;;
        esac
}

# The program itself, without the library: its own checks must hold.
run plain "$PROGS/stress" -i "$((iters / 2))"
run preload env LD_PRELOAD="$LIBMEMD" "$PROGS/stress" -i "$iters"
run preload-perturb env LD_PRELOAD="$LIBMEMD" MALLOC_PERTURB_=165 MEMD_PROFILE_RATE=16K "$PROGS/stress" -i "$((iters / 2))" -s 13
run preload-rate1 env LD_PRELOAD="$LIBMEMD" MEMD_PROFILE_RATE=1 "$PROGS/stress" -i "$((iters / 4))" -s 7
run preload-rate4k env LD_PRELOAD="$LIBMEMD" MEMD_PROFILE_RATE=4K "$PROGS/stress" -i "$iters" -s 11
run linked env MEMD_PROFILE_RATE=64K "$PROGS/stress-linked" -i "$iters" -s 3
ldd_out=$(ldd "$PROGS/stress-linked")
grep -q libmemd <<<"$ldd_out" || fail "stress-linked is not linked against libmemd"
# The profile is written at exit in the parent and in every forked child (each
# its own %p), and sampled frees match across threads.
run preload-profile env LD_PRELOAD="$LIBMEMD" MEMD_PROFILE_RATE=16K MEMD_MEMPROFILE="$tmp/stress.%p.pb.gz" "$PROGS/stress" -i "$((iters / 2))" -s 5
n=$(find "$tmp" -name 'stress.*.pb.gz' | wc -l)
if [ "$n" -lt 1 ]; then
        echo "FAIL [preload-profile]: no profile written" >&2
        failed=$((failed + 1))
elif [ "$n" -ne 4 ]; then
        echo "note: $n profiles written; 4 expected if fork children that exit() write theirs too" >&2
fi
# Another allocator beneath libmemd: it must forward to jemalloc, not glibc
# (pvalloc included: jemalloc has none, glibc's would hand it a foreign block).
# libmemd comes first in LD_PRELOAD: the list is searched in order, so
# "$JEMALLOC:$LIBMEMD" would give the program jemalloc's malloc and libmemd
# would see nothing (run() checks that its Mallocs counter moved).
if [ -n "$JEMALLOC" ]; then
        run jemalloc-below env LD_PRELOAD="$LIBMEMD:$JEMALLOC" "$PROGS/stress" -i "$iters"
        run jemalloc-below-rate1 env LD_PRELOAD="$LIBMEMD:$JEMALLOC" MEMD_PROFILE_RATE=1 "$PROGS/stress" -i "$((iters / 4))" -s 9
else
        echo "note: libjemalloc.so.2 not installed, libmemd over jemalloc not tested" >&2
fi

[ "$failed" -eq 0 ] || fail "$failed stress run(s) failed"
echo "PASS: stress under LD_PRELOAD (default, rate 1, 4K), linked, with a profile${JEMALLOC:+, over jemalloc}"
