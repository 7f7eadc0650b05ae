#!/bin/bash
# test-policy.sh - libmemd's in-process policies with no daemon (MEMD_SOCKET=off): MEMD_MEMORY_LIMIT, MEMD_GCPERCENT, MEMORY_PRESSURE_WATCH.
#
# tests/progs/cache fills a cache that only its registered reclaimer empties;
# the program never asks for a GC, so every cycle seen here is libmemd's own:
# gctrace lines without "(forced)", scavenges numbered scvgN (not scvg-1).
. "$(dirname "$0")/common.sh"
need_prog cache
failed=0
bad() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
MiB=1048576

field() { sed -n "s/.* $2=\\([-0-9]*\\).*/\\1/p" "$1" | tail -1; }
no_forced() {
        ! grep -q '(forced)' "$1" || bad "$2: an automatic cycle marked (forced): $(grep -m1 forced "$1")"
        ! grep -q '^scvg-1' "$1" || bad "$2: an automatic scavenge printed as scvg-1"
}

echo "== (a) MEMD_MEMORY_LIMIT=64M, 100 MiB cache: GC + scavenge bring the heap under it"
MEMD_DEBUG=gctrace=1 MEMD_MEMORY_LIMIT=64M run_preloaded "$PROGS/cache" -f 100 -h 1500 >"$tmp/out" 2>"$tmp/err" || fail "cache exited $?"
sed 's/^/   /' "$tmp/out" "$tmp/err"
[ "$(field "$tmp/out" reclaims)" -ge 1 ] || bad "limit: the reclaimer never ran"
grep -Eq '^gc [0-9]+ @.* MB, 64 MB goal, [0-9]+ P$' "$tmp/err" || bad "limit: no automatic gc line with the limit as goal"
grep -Eq '^scvg[0-9]+: [0-9]+ MB released$' "$tmp/err" || bad "limit: no automatic scvgN line"
no_forced "$tmp/err" limit
held=$(field "$tmp/out" held)
[ "$held" -le $((64 * MiB)) ] || bad "limit: HeapSys-HeapReleased $held at the end, over the 64 MiB limit"
rss=$(field "$tmp/out" rss_kib)
[ "$rss" -le $((64 * 1024 + 16 * 1024)) ] || bad "limit: RSS $rss KiB at the end, limit 64 MiB (+16 MiB for the program)"

echo "== (a') a reclaimer that frees nothing: cycles back off (1 s, then 2 s, 4 s ...)"
MEMD_DEBUG=gctrace=1 MEMD_MEMORY_LIMIT=32M run_preloaded "$PROGS/cache" -f 64 -k -h 5000 >"$tmp/out" 2>"$tmp/err" || fail "cache exited $?"
sed 's/^/   /' "$tmp/out" "$tmp/err"
n=$(grep -c '^gc ' "$tmp/err" || true)
[ "$n" -ge 1 ] && [ "$n" -le 3 ] || bad "backoff: $n cycles in 5 s over the limit with nothing to free (want 1..3; 5+ is no backoff)"

echo "== (b) MEMD_GCPERCENT=100: the reclaimer runs each time HeapAlloc doubles"
MEMD_DEBUG=gctrace=1 MEMD_GCPERCENT=100 run_preloaded "$PROGS/cache" -f 64 -r 25 -k -h 300 >"$tmp/out" 2>"$tmp/err" || fail "cache exited $?"
sed 's/^/   /' "$tmp/out" "$tmp/err"
mapfile -t sizes < <(sed -n 's/^reclaim n=[0-9]* cache_bytes=\([0-9]*\).*/\1/p' "$tmp/out")
[ "${#sizes[@]}" -ge 3 ] || bad "gcpercent: ${#sizes[@]} reclaimer runs growing to 64 MiB, want >= 3 (4, 8, 16, 32 MiB goals)"
[ "${#sizes[@]}" -eq 0 ] || [ "${sizes[0]}" -ge $((4 * MiB)) ] || bad "gcpercent: first run at ${sizes[0]} bytes, under the 4 MiB minimum goal"
for ((i = 1; i < ${#sizes[@]}; i++)); do
        p=${sizes[i - 1]} c=${sizes[i]}
        [ "$c" -gt $((p * 2)) ] || bad "gcpercent: run at $c bytes, not past twice the previous live heap $p"
        [ "$c" -le $((p * 2 + 8 * MiB)) ] || bad "gcpercent: run at $c bytes, long after twice $p"
done
! grep -q '^scvg' "$tmp/err" || bad "gcpercent: GOGC cycles scavenged (they run reclaimers only)"
no_forced "$tmp/err" gcpercent

echo "== (c) MEMORY_PRESSURE_WATCH=FIFO: a write is memory pressure: GC + scavenge"
mkfifo "$tmp/fifo"
(sleep 0.5; echo pressure >"$tmp/fifo") &
writer=$!
MEMD_DEBUG=gctrace=1 MEMORY_PRESSURE_WATCH=$tmp/fifo run_preloaded "$PROGS/cache" -f 32 -h 2000 >"$tmp/out" 2>"$tmp/err" || fail "cache exited $?"
wait "$writer" || true
sed 's/^/   /' "$tmp/out" "$tmp/err"
[ "$(field "$tmp/out" reclaims)" -eq 1 ] || bad "fifo: the reclaimer ran $(field "$tmp/out" reclaims) times, want once"
grep -q '^gc 1 ' "$tmp/err" || bad "fifo: no gc line"
grep -Eq '^scvg0: [0-9]+ MB released$' "$tmp/err" || bad "fifo: no scvg0 line"
no_forced "$tmp/err" fifo
! grep -q 'libmemd:' "$tmp/err" || bad "fifo: a warning: $(grep libmemd: "$tmp/err")"

echo "== (c') MEMORY_PRESSURE_WATCH=/proc/pressure/memory with a PSI trigger"
# With its NUL, as systemd writes it: the kernel turns the last byte of the
# write into the string's end, so without one "2000000" would read "200000",
# a window under the 500 ms minimum (EINVAL).
trigger=$(printf 'some 200000 2000000\0' | base64)
if [ ! -e /proc/pressure/memory ]; then
        echo "SKIP (part): /proc/pressure/memory does not exist (kernel without PSI)"
elif ! python3 -c 'import os; fd = os.open("/proc/pressure/memory", os.O_RDWR); os.write(fd, b"some 200000 2000000\0")' 2>"$tmp/psi"; then
        echo "SKIP (part): this kernel refuses a PSI trigger from us: $(tail -1 "$tmp/psi")"
else
        MEMORY_PRESSURE_WATCH=/proc/pressure/memory MEMORY_PRESSURE_WRITE=$trigger run_preloaded "$PROGS/cache" -f 8 -h 300 >"$tmp/out" 2>"$tmp/err" || bad "psi: cache exited $?"
        [ ! -s "$tmp/err" ] && echo "ok   the trigger was accepted" || bad "psi: $(cat "$tmp/err")"
fi

echo "== (d) bad values: one warning each, the program runs; /dev/null is off, silently"
printf 'x' >"$tmp/regular"
for kv in "MEMORY_PRESSURE_WATCH=relative/path" "MEMORY_PRESSURE_WATCH=$tmp/missing" "MEMORY_PRESSURE_WATCH=$tmp" \
          "MEMORY_PRESSURE_WATCH=$tmp/regular MEMORY_PRESSURE_WRITE=$trigger" \
          "MEMORY_PRESSURE_WATCH=$tmp/fifo MEMORY_PRESSURE_WRITE=!!notbase64" \
          "MEMORY_PRESSURE_WATCH=/proc/pressure/memory" \
          "MEMD_MEMORY_LIMIT=lots" "MEMD_GCPERCENT=-3"; do
        rc=0
        # shellcheck disable=SC2086
        env $kv LD_PRELOAD="$LIBMEMD" "$PROGS/cache" -f 8 -h 200 >"$tmp/out" 2>"$tmp/err" || rc=$?
        n=$(wc -l <"$tmp/err")
        if [ "$rc" -ne 0 ] || ! grep -q '^done reclaims=0 ' "$tmp/out"; then
                bad "$kv: exit $rc, stdout $(cat "$tmp/out")"
        elif [ "$n" -ne 1 ]; then
                bad "$kv: $n stderr lines, want 1: $(tr '\n' '|' <"$tmp/err")"
        else
                echo "ok   $kv: $(cat "$tmp/err")"
        fi
done
MEMORY_PRESSURE_WATCH=/dev/null run_preloaded "$PROGS/cache" -f 8 -h 200 >"$tmp/out" 2>"$tmp/err" || bad "/dev/null: exit $?"
[ ! -s "$tmp/err" ] || bad "/dev/null: stderr $(cat "$tmp/err")"

[ "$failed" -eq 0 ] || fail "$failed policy check(s) failed"
echo "PASS: limit, GOGC and memory pressure enforced in-process, bad values warn once"
