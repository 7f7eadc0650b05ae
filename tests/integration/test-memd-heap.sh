#!/bin/bash
# test-memd-heap.sh - memctl heap: memd's copy of a live process's profile in every format, read by go tool pprof; exact at MEMD_PROFILE_RATE=1 through the daemon; still there after kill -9.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
need_prog callsites cxx
command -v objcopy >/dev/null || skip "objcopy (binutils) is needed to strip a binary"
command -v python3 >/dev/null || skip "python3 is needed for check_profile.py"
command -v go >/dev/null || skip "go (golang-go) is needed: go tool pprof reads the profiles"

"$MEMD" --socket "$sock" --log-target stderr --keep-exited 60 2>"$tmp/memd.log" &
memd_pid=$!
wait_socket memd
export MEMD_SOCKET=$sock

note "callsites at MEMD_PROFILE_RATE=1, waiting"
MEMD_PROFILE_RATE=1 LD_PRELOAD=$LIBMEMD "$PROGS/callsites" -s 2 -t 2 -o "$tmp/truth" -w >"$tmp/cs.out" 2>"$tmp/cs.err" &
cs=$!
agent_pid=$cs
for _ in $(seq 200); do grep -q '^waiting' "$tmp/cs.out" && break; sleep 0.05; done
grep -q '^waiting' "$tmp/cs.out" || fail "callsites did not get to waiting: $(cat "$tmp/cs.err")"
sleep 2.5 # its last delta is in memd

note "memctl heap -o FILE: pprof protobuf, exact per call site (check_profile.py reads it with go tool pprof -raw)"
ctl heap "$cs" -o "$tmp/heap.pb.gz" 2>"$tmp/heap.err" || bad "memctl heap -o failed: $(cat "$tmp/heap.err")"
grep -q "written to $tmp/heap.pb.gz" "$tmp/heap.err" || bad "memctl heap did not say where it wrote"
python3 "$CHECK_PROFILE" --truth "$tmp/truth" --rate 1 --mode exact "$tmp/heap.pb.gz" >"$tmp/check.out" 2>&1 ||
        bad "the profile through memd is not exact: $(tail -20 "$tmp/check.out")"
go tool pprof -top -sample_index=inuse_space "$tmp/heap.pb.gz" >"$tmp/top.txt" 2>&1 ||
        bad "go tool pprof -top failed: $(cat "$tmp/top.txt")"
grep -Eq ' site_keep_64k$' "$tmp/top.txt" || bad "pprof -top shows no site_keep_64k: $(cat "$tmp/top.txt")"

note "memctl top equals go tool pprof -top on memctl heap's profile, every sample index, flat and --cum"
# -symbolize=none: pprof takes the names memd wrote into the profile (memd
# symbolizes with libdwfl) instead of naming the frames again itself.
for idx in inuse_space inuse_objects alloc_space alloc_objects; do
        for cum in "" --cum; do
                ctl top "$cs" --sample "$idx" $cum >"$tmp/mtop.txt" 2>"$tmp/mtop.err" ||
                        bad "memctl top --sample $idx $cum failed: $(cat "$tmp/mtop.err")"
                go tool pprof -symbolize=none -top -sample_index="$idx" ${cum:+-cum} "$tmp/heap.pb.gz" 2>/dev/null |
                        sed -n '/^Type:/,$p' | grep -v '^Time: ' >"$tmp/ptop.txt"
                diff -u "$tmp/ptop.txt" "$tmp/mtop.txt" >"$tmp/top.diff" ||
                        bad "memctl top --sample $idx $cum differs from pprof: $(cat "$tmp/top.diff")"
        done
done
ctl top "$cs" >"$tmp/mtop.txt"
for f in site_keep_64k site_keep_small site_calloc thread_site run_sites main; do
        grep -Eq " $f\$" "$tmp/mtop.txt" || bad "memctl top names no $f: $(cat "$tmp/mtop.txt")"
done
ctl heap "$cs" --format text >"$tmp/named.txt"
grep -Eq '^#'$'\t''0x[0-9a-f]+'$'\t''site_keep_64k\+0x[0-9a-f]+'$'\t''.*callsites\.c:[0-9]+$' "$tmp/named.txt" ||
        bad "the text profile has no '#' line naming site_keep_64k with callsites.c:LINE: $(grep '^#' "$tmp/named.txt" | head -5)"
r=0; ctl top "$cs" --sample bogus >/dev/null 2>&1 || r=$?
[ "$r" -eq 2 ] || bad "memctl top --sample bogus exited $r, want 2"

note "--format text (Go's debug=1): the header equals memd's totals, pprof reads it"
ctl heap "$cs" --format text >"$tmp/heap.txt" || bad "memctl heap --format text failed"
ctl heap "$cs" --debug=1 >"$tmp/heap1.txt" || bad "memctl heap --debug=1 failed"
cmp -s "$tmp/heap.txt" "$tmp/heap1.txt" || bad "--debug=1 and --format text differ"
head -1 "$tmp/heap.txt" | grep -Eq '^heap profile: [0-9]+: [0-9]+ \[[0-9]+: [0-9]+\] @ heap/2$' ||
        bad "text header: $(head -1 "$tmp/heap.txt")"
grep -q '^MAPPED_LIBRARIES:' "$tmp/heap.txt" || bad "text profile has no MAPPED_LIBRARIES section"
grep -q '^# HeapAlloc = ' "$tmp/heap.txt" || bad "text profile has no MemStats trailer"
totals=$(ctl --json status "$cs" | python3 -c 'import json,sys; p=json.load(sys.stdin)["profile"]; print(p["inuse_objects"], p["inuse_bytes"], p["alloc_objects"], p["alloc_bytes"])')
want=$(head -1 "$tmp/heap.txt" | sed -E 's/^heap profile: ([0-9]+): ([0-9]+) \[([0-9]+): ([0-9]+)\].*/\1 \2 \3 \4/')
[ "$totals" = "$want" ] || bad "text header says $want, memd's totals $totals"
go tool pprof -top "$tmp/heap.txt" >"$tmp/top-text.txt" 2>&1 || bad "go tool pprof cannot read the text profile: $(head -5 "$tmp/top-text.txt")"

note "--format folded: one line per stack, the values sum to the in-use bytes"
ctl heap "$cs" --format folded >"$tmp/heap.folded" || bad "memctl heap --format folded failed"
sum=$(awk '{ s += $NF } END { print s }' "$tmp/heap.folded")
inuse=$(echo "$totals" | cut -d' ' -f2)
[ "$sum" = "$inuse" ] || bad "folded values sum to $sum, in-use bytes are $inuse"
grep -Evq '^[^ ]+ [0-9]+$' "$tmp/heap.folded" && bad "a folded line is not 'frames value': $(grep -Ev '^[^ ]+ [0-9]+$' "$tmp/heap.folded" | head -2)"

note "memd passes the file to memctl (SCM_RIGHTS): the same bytes to a file, a pipe, and -o"
ctl heap "$cs" --format folded | cat >"$tmp/heap-pipe.folded" || bad "memctl heap into a pipe failed"
ctl heap "$cs" --format folded -o "$tmp/heap-o.folded" 2>/dev/null || bad "memctl heap -o (folded) failed"
cmp -s "$tmp/heap.folded" "$tmp/heap-pipe.folded" || bad "memctl heap wrote different bytes into a pipe"
cmp -s "$tmp/heap.folded" "$tmp/heap-o.folded" || bad "memctl heap wrote different bytes with -o"

note "bad options are usage errors; an unattached pid is an error and leaves no file"
r=0; ctl heap "$cs" --format yaml >/dev/null 2>"$tmp/err" || r=$?
[ "$r" -eq 2 ] || bad "--format yaml exited $r, want 2"
r=0; ctl heap 1 -o "$tmp/none.pb.gz" 2>"$tmp/err" || r=$?
[ "$r" -eq 1 ] && grep -q 'not attached' "$tmp/err" || bad "heap of an unattached pid: exit $r, $(cat "$tmp/err")"
[ ! -e "$tmp/none.pb.gz" ] || bad "a failed memctl heap left its output file"

note "kill -9: the process leaves the list, its last profile stays"
kill -KILL "$cs"
wait "$cs" 2>/dev/null || true
agent_pid=
for _ in $(seq 40); do
        ctl status >"$tmp/status"
        grep -Eq "^ *$cs " "$tmp/status" || break
        sleep 0.05
done
! grep -Eq "^ *$cs " "$tmp/status" || bad "a killed process is still listed"
ctl status "$cs" >"$tmp/one" 2>&1 || bad "status of the exited process failed: $(cat "$tmp/one")"
grep -q '^Exited:' "$tmp/one" || bad "status PID does not say it exited"
ctl heap "$cs" -o "$tmp/after.pb.gz" 2>/dev/null || bad "memctl heap after kill -9 failed"
python3 "$CHECK_PROFILE" --truth "$tmp/truth" --rate 1 --mode exact "$tmp/after.pb.gz" >"$tmp/check2.out" 2>&1 ||
        bad "the post-mortem profile is not exact: $(tail -20 "$tmp/check2.out")"
r=0; ctl gc "$cs" >/dev/null 2>"$tmp/err" || r=$?
[ "$r" -eq 1 ] || bad "gc of an exited process exited $r, want 1"

note "MEMD_PROFILE_RATE=16K through memd: every 16 MiB site within 10% (relative SE sqrt(16K/16M) = 3%)"
MEMD_PROFILE_RATE=16K LD_PRELOAD=$LIBMEMD "$PROGS/callsites" -s 16 -t 2 -o "$tmp/truth16" -w >"$tmp/cs16.out" 2>&1 &
cs16=$!
agent_pid=$cs16
for _ in $(seq 400); do grep -q '^waiting' "$tmp/cs16.out" && break; sleep 0.05; done
sleep 1.5
ctl heap "$cs16" -o "$tmp/heap16.pb.gz" 2>/dev/null || bad "memctl heap at 16K failed"
python3 "$CHECK_PROFILE" --truth "$tmp/truth16" --rate 16384 --mode tolerance --tol 0.10 --min-bytes $((16 << 20)) \
        "$tmp/heap16.pb.gz" >"$tmp/check16.out" 2>&1 || bad "16K through memd: $(tail -12 "$tmp/check16.out")"
kill -TERM "$cs16"; wait "$cs16" || true
agent_pid=

note "the default rate (512K) through memd: unbiased, the mean of 10 runs' estimates against the truth"
profiles=()
for i in $(seq 10); do
        LD_PRELOAD=$LIBMEMD "$PROGS/callsites" -s 16 -t 2 -o "$tmp/truth512" -w >"$tmp/cs512.out" 2>&1 &
        p512=$!
        agent_pid=$p512
        for _ in $(seq 400); do grep -q '^waiting' "$tmp/cs512.out" && break; sleep 0.05; done
        # Its delta after the last allocation is in memd within two reports.
        sleep 2.2
        ctl heap "$p512" -o "$tmp/heap512-$i.pb.gz" 2>/dev/null || bad "memctl heap at 512K (run $i) failed"
        profiles+=("$tmp/heap512-$i.pb.gz")
        kill -TERM "$p512"; wait "$p512" || true
        agent_pid=
done
python3 "$CHECK_PROFILE" --truth "$tmp/truth512" --rate 524288 --mode mean "${profiles[@]}" >"$tmp/check512.out" 2>&1 ||
        bad "512K through memd is biased: $(tail -15 "$tmp/check512.out")"
tail -12 "$tmp/check512.out"

note "C++ (cxx, 1,500 rounds of new/delete, vector, string, map): demangled names, after it exited"
MEMD_PROFILE_RATE=64K LD_PRELOAD=$LIBMEMD "$PROGS/cxx" 1500 >"$tmp/cxx.out" 2>&1 &
cxx=$!
for _ in $(seq 100); do ctl status "$cxx" >/dev/null 2>&1 && break; sleep 0.05; done
wait "$cxx" || bad "cxx failed: $(cat "$tmp/cxx.out")"
ctl top "$cxx" --sample alloc_space >"$tmp/cxx-top.txt" 2>&1 || bad "memctl top of the exited cxx failed: $(cat "$tmp/cxx-top.txt")"
# churn() is inlined into main at -O2; the library's functions are not.
grep -Eq ' std::__cxx11::basic_string::_M_(mutate|construct|create)$' "$tmp/cxx-top.txt" ||
        bad "memctl top shows no demangled std::__cxx11::basic_string function: $(tr '\n' '|' <"$tmp/cxx-top.txt")"
grep -q '_Z' "$tmp/cxx-top.txt" && bad "memctl top shows mangled names: $(grep _Z "$tmp/cxx-top.txt" | head -3)"

note "a binary deleted or replaced while it runs still symbolizes (/proc/PID/map_files) and keeps its build-id; a stripped one gives addresses"
cp "$PROGS/callsites" "$tmp/callsites-copy"
# Every allocation sampled: at the default rate a 1 MiB site has no sample
# one run in seven (e^-2), and the check below would fail by chance.
MEMD_PROFILE_RATE=1 LD_PRELOAD=$LIBMEMD "$tmp/callsites-copy" -s 1 -t 1 -w >"$tmp/del.out" 2>&1 &
del=$!
agent_pid=$del
for _ in $(seq 200); do grep -q '^waiting' "$tmp/del.out" && break; sleep 0.05; done
# Replaced: another program now at the path, the running one deleted.
cp "$(type -P true)" "$tmp/callsites-new"
mv "$tmp/callsites-new" "$tmp/callsites-copy"
sleep 1.5
ctl top "$del" >"$tmp/del-top.txt" 2>&1 || bad "memctl top of a deleted binary failed: $(cat "$tmp/del-top.txt")"
grep -Eq ' site_keep_64k$' "$tmp/del-top.txt" || bad "a deleted binary lost its names: $(cat "$tmp/del-top.txt")"
# Its build-id is the running code's (read from the loaded object), not the new file's.
want_bid=$(readelf -n "$PROGS/callsites" | sed -n 's/.*Build ID: *//p')
ctl heap "$del" -o "$tmp/del.pb.gz" 2>/dev/null || bad "memctl heap of a replaced binary failed"
go tool pprof -raw "$tmp/del.pb.gz" 2>/dev/null | grep -F "callsites-copy" >"$tmp/del-map.txt" || true
grep -q " $want_bid" "$tmp/del-map.txt" ||
        bad "the replaced binary's mapping does not carry its build-id $want_bid: $(cat "$tmp/del-map.txt")"
kill -TERM "$del"; wait "$del" || true
# Without its build-id too: with it, memd would rightly name the frames from
# the unstripped build it has already read (same build-id, same code).
objcopy --strip-all --remove-section=.note.gnu.build-id "$PROGS/callsites" "$tmp/callsites-stripped"
MEMD_PROFILE_RATE=1 LD_PRELOAD=$LIBMEMD "$tmp/callsites-stripped" -s 1 -t 1 -w >"$tmp/strip.out" 2>&1 &
st=$!
agent_pid=$st
for _ in $(seq 200); do grep -q '^waiting' "$tmp/strip.out" && break; sleep 0.05; done
sleep 1.5
ctl top "$st" >"$tmp/strip-top.txt" 2>&1 || bad "memctl top of a stripped binary failed: $(cat "$tmp/strip-top.txt")"
grep -Eq ' \[callsites-stripped\]$' "$tmp/strip-top.txt" ||
        bad "a stripped binary's frames are not shown as its mapping: $(tr '\n' '|' <"$tmp/strip-top.txt")"
ctl heap "$st" -o "$tmp/strip.pb.gz" 2>/dev/null || bad "memctl heap of a stripped binary failed"
kill -TERM "$st"; wait "$st" || true
agent_pid=

stop_memd
finish
