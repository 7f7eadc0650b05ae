#!/bin/bash
# test-profile-accuracy.sh - the at-exit heap profile of a program with known call sites, read by go tool pprof, against the truth.
#
#  - MEMD_PROFILE_RATE=1: every figure of every site exact (protobuf and legacy text);
#  - MEMD_PROFILE_RATE=16K: every site of >= 16 MiB within 10%;
#  - default rate (512K): the mean over many runs within a few standard errors
#    of the truth (unbiasedness; one run has ~18% error at 16 MiB);
#  - freed memory shows as freed; function names from the binary; no
#    allocator entry frame as leaf; with and without frame pointers.
. "$(dirname "$0")/common.sh"
need_prog callsites callsites-nofp
command -v go >/dev/null || skip "go not installed (go tool pprof reads the profiles)"
go tool pprof -h >/dev/null 2>&1 || skip "go tool pprof does not run"

runs=${ACCURACY_RUNS:-20}
failed=0
check() {
        if python3 "$CHECK_PROFILE" "$@"; then :; else
                echo "FAIL: check_profile.py $*" >&2
                failed=$((failed + 1))
        fi
}

# callsites BUILD MIB EXT [ENV...]: runs one, prints the path of the profile
# it wrote; the truth goes to $tmp/truth.
callsites() {
        local build=$1 mib=$2 ext=$3; shift 3
        local out=$tmp/prof.$build.$RANDOM$RANDOM
        env "$@" LD_PRELOAD="$LIBMEMD" MEMD_MEMPROFILE="$out.%p.$ext" \
                "$PROGS/$build" -s "$mib" -t 4 -o "$tmp/truth" >/dev/null 2>"$tmp/callsites.err" &
        local pid=$!
        wait "$pid" || fail "$build exited $? under libmemd: $(head -5 "$tmp/callsites.err")"
        [ ! -s "$tmp/callsites.err" ] || fail "$build wrote to stderr: $(head -5 "$tmp/callsites.err")"
        [ -s "$out.$pid.$ext" ] || fail "MEMD_MEMPROFILE=$out.%p.$ext: no profile at $out.$pid.$ext"
        echo "$out.$pid.$ext"
}

check_text_shape() {
        local f=$1 rate=$2
        local header
        header=$(head -1 "$f")
        [[ $header =~ ^heap\ profile:\ [0-9]+:\ [0-9]+\ \[[0-9]+:\ [0-9]+\]\ @\ heap/$((2 * rate))$ ]] ||
                { echo "FAIL: $f: header '$header' is not Go's 'heap profile: I: IB [A: AB] @ heap/$((2 * rate))'" >&2; failed=$((failed + 1)); }
        grep -Eq $'^#\t0x[0-9a-f]+\t' "$f" ||
                { echo "FAIL: $f: no '#<TAB>0xPC<TAB>func' frame lines" >&2; failed=$((failed + 1)); }
        grep -q '^MAPPED_LIBRARIES:' "$f" ||
                { echo "FAIL: $f: no MAPPED_LIBRARIES: section" >&2; failed=$((failed + 1)); }
        grep -q '^# memd.MemStats' "$f" ||
                { echo "FAIL: $f: no '# memd.MemStats' trailer" >&2; failed=$((failed + 1)); }
        # Names on the '#' lines are best effort (pprof names frames from
        # MAPPED_LIBRARIES itself): a note, not a failure.
        grep -Pq '^#\t0x[0-9a-f]+\tsite_keep_64k\+0x[0-9a-f]+' "$f" ||
                echo "note: $f: no '#' frame line names site_keep_64k (symbols of the executable not used)" >&2
}

echo "== MEMD_PROFILE_RATE=1: exact"
topflag=--top   # show pprof -top once
for b in callsites callsites-nofp; do
        p=$(callsites "$b" 2 pb.gz MEMD_PROFILE_RATE=1)
        check --truth "$tmp/truth" --rate 1 --mode exact $topflag "$p"
        topflag=
        t=$(callsites "$b" 2 txt MEMD_PROFILE_RATE=1)
        check_text_shape "$t" 1
        check --truth "$tmp/truth" --rate 1 --mode exact --text "$t"
done

echo "== MEMD_PROFILE_RATE=16K: sites >= 16 MiB within 10%"
for b in callsites callsites-nofp; do
        p=$(callsites "$b" 32 pb.gz MEMD_PROFILE_RATE=16K)
        check --truth "$tmp/truth" --rate 16384 --mode tolerance "$p"
done
t=$(callsites callsites 32 txt MEMD_PROFILE_RATE=16K)
check_text_shape "$t" 16384
check --truth "$tmp/truth" --rate 16384 --mode tolerance --text "$t"

echo "== C++: operator new/delete reach malloc; operator new is never the leaf"
if [ -x "$PROGS/cxx" ]; then
        env LD_PRELOAD="$LIBMEMD" MEMD_PROFILE_RATE=1 MEMD_MEMPROFILE="$tmp/cxx.pb.gz" "$PROGS/cxx" 3 >/dev/null ||
                fail "cxx exited $? under libmemd"
        check --rate 1 --mode exact "$tmp/cxx.pb.gz"
        go tool pprof -top -nodecount=8 -sample_index=alloc_space "$tmp/cxx.pb.gz" 2>/dev/null | sed -n '/flat%/,$p' | sed 's/^/  | /'
fi

echo "== default rate (512K): $runs runs, mean estimate vs truth"
profiles=()
for i in $(seq 1 "$runs"); do
        b=callsites; [ $((i % 2)) -eq 0 ] && b=callsites-nofp
        profiles+=("$(callsites "$b" 32 pb.gz)")
done
check --truth "$tmp/truth" --rate 524288 --mode mean "${profiles[@]}"

[ "$failed" -eq 0 ] || fail "$failed profile check(s) failed"
echo "PASS: profiles exact at rate 1, within 10% at 16K, unbiased at 512K, with and without frame pointers"
