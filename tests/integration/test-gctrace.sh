#!/bin/bash
# test-gctrace.sh - MEMD_DEBUG=gctrace=1 lines in the seed's grammar, and bad environment values.
#
# seed (looks the API up with dlsym) calls memd_gc() and memd_free_os_memory();
# every stderr line must be a gc or scvg-1 line in Go's grammar (SPEC §4), with
# figures that add up.  Then each bad MEMD_* value gives exactly one warning
# line and the program still runs normally.
. "$(dirname "$0")/common.sh"
need_prog seed cxx

gc_re='^gc [0-9]+ @[0-9]+\.[0-9]{3}s [0-9]+%: [0-9.]+\+[0-9.]+\+[0-9.]+ ms clock, [0-9.]+\+[0-9.]+/[0-9.]+/[0-9.]+\+[0-9.]+ ms cpu, [0-9]+->[0-9]+->[0-9]+ MB, [0-9]+ MB goal, [0-9]+ P( \(forced\))?$'
rel_re='^scvg-1: [0-9]+ MB released$'
sum_re='^scvg-1: inuse: [0-9]+, idle: [0-9]+, sys: [0-9]+, released: [0-9]+, consumed: [0-9]+ \(MB\)$'
failed=0
bad() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }

# check_trace FILE N_GC N_SCVG: every line matches; N_GC gc lines numbered in
# order, all forced, times increasing; N_SCVG released+summary pairs.
check_trace() {
        local f=$1 want_gc=$2 want_scvg=$3
        local n_gc=0 n_rel=0 n_sum=0 last_t=-1 line
        while IFS= read -r line; do
                if [[ $line =~ $gc_re ]]; then
                        n_gc=$((n_gc + 1))
                        local num t
                        num=$(awk '{ print $2 }' <<<"$line")
                        t=$(awk '{ sub(/^@/, "", $3); sub(/s$/, "", $3); print $3 }' <<<"$line")
                        [ "$num" -eq "$n_gc" ] || bad "gc line numbered $num, want $n_gc: $line"
                        awk -v a="$last_t" -v b="$t" 'BEGIN { exit !(b >= a) }' || bad "gc time went backwards: $line"
                        last_t=$t
                        [[ $line == *" (forced)" ]] || bad "API-requested GC not marked (forced): $line"
                elif [[ $line =~ $rel_re ]]; then
                        n_rel=$((n_rel + 1))
                elif [[ $line =~ $sum_re ]]; then
                        n_sum=$((n_sum + 1))
                        # inuse + idle = sys, sys - released = consumed (each rounded to MB: +-2)
                        read -r inuse idle sys released consumed < <(sed -E 's/[^0-9]+/ /g; s/^ *1 //' <<<"$line")
                        [ $(( inuse + idle - sys )) -le 2 ] && [ $(( sys - inuse - idle )) -le 2 ] ||
                                bad "inuse $inuse + idle $idle != sys $sys: $line"
                        [ $(( sys - released - consumed )) -le 2 ] && [ $(( consumed + released - sys )) -le 2 ] ||
                                bad "sys $sys - released $released != consumed $consumed: $line"
                else
                        bad "stderr line in no gctrace grammar: '$line'"
                fi
        done <"$f"
        [ "$n_gc" -eq "$want_gc" ] || bad "$n_gc gc lines, want $want_gc"
        [ "$n_rel" -eq "$want_scvg" ] || bad "$n_rel 'scvg-1: N MB released' lines, want $want_scvg"
        [ "$n_sum" -eq "$want_scvg" ] || bad "$n_sum 'scvg-1: inuse: ...' lines, want $want_scvg"
}

echo "== seed -m app -g: memd_gc() then memd_free_os_memory()"
MEMD_DEBUG=gctrace=1 run_preloaded "$PROGS/seed" -t 2 -n 65536 -g >"$tmp/out" 2>"$tmp/err" || fail "seed exited $?"
sed 's/^/   /' "$tmp/out" "$tmp/err"
grep -q 'lib=memd' "$tmp/out" || fail "seed did not find the libmemd API with dlsym"
check_trace "$tmp/err" 2 1

echo "== seed -m reclaimer: the forced GC evicts a 128 MiB cache"
MEMD_DEBUG=gctrace=1 run_preloaded "$PROGS/seed" -t 1 -n 131072 -m reclaimer >"$tmp/out" 2>"$tmp/err" || fail "seed exited $?"
sed 's/^/   /' "$tmp/out" "$tmp/err"
check_trace "$tmp/err" 1 1
grep -q 'reclaimer_calls=1 ' "$tmp/out" || bad "the reclaimer did not run exactly once"
# A->B->C MB: heap at start (the cache, >= 128 MB), after reclaim and live (small).
if gc_line=$(grep -m1 -E "$gc_re" "$tmp/err"); then
        read -r a b c < <(sed -E 's/.* ([0-9]+)->([0-9]+)->([0-9]+) MB.*/\1 \2 \3/' <<<"$gc_line")
        [ "$a" -ge 128 ] || bad "heap at GC start $a MB, the cache alone was 128 MiB: $gc_line"
        [ "$b" -le 16 ] && [ "$c" -le 16 ] || bad "heap after reclaim $b MB / live $c MB, the reclaimer freed the cache: $gc_line"
fi

echo "== no gctrace without MEMD_DEBUG, and none when nothing collects"
run_preloaded "$PROGS/seed" -t 1 -n 4096 -g >/dev/null 2>"$tmp/err" || fail "seed exited $?"
[ ! -s "$tmp/err" ] || bad "stderr without MEMD_DEBUG: $(head -3 "$tmp/err")"
MEMD_DEBUG=gctrace=1 run_preloaded "$PROGS/cxx" 2 >/dev/null 2>"$tmp/err" || fail "cxx exited $?"
[ ! -s "$tmp/err" ] || bad "gctrace lines from a program that never collects: $(head -3 "$tmp/err")"

echo "== bad environment values: one warning line each, program runs normally"
ref=$("$PROGS/cxx" 3)
for kv in MEMD_PROFILE_RATE=banana MEMD_PROFILE_RATE=12Q MEMD_PROFILE_RATE=-1 MEMD_DEBUG=gctrace=x \
          MEMD_MEMORY_LIMIT=-5 MEMD_MEMORY_LIMIT=lots MEMD_GCPERCENT=banana; do
        rc=0
        out=$(env "$kv" LD_PRELOAD="$LIBMEMD" "$PROGS/cxx" 3 2>"$tmp/err") || rc=$?
        n=$(wc -l <"$tmp/err")
        var=${kv%%=*}
        if [ "$rc" -ne 0 ] || [ "$out" != "$ref" ]; then
                bad "$kv: exit $rc, stdout '$out' (want '$ref')"
        elif [ "$n" -ne 1 ]; then
                bad "$kv: $n stderr lines, want exactly 1: $(head -5 "$tmp/err" | tr '\n' '|')"
        elif ! grep -q "$var" "$tmp/err"; then
                bad "$kv: the warning does not name $var: $(cat "$tmp/err")"
        else
                echo "ok   $kv: $(cat "$tmp/err")"
        fi
done
# All at once: one line each, not more.
rc=0
out=$(env MEMD_PROFILE_RATE=banana MEMD_DEBUG=gctrace=x MEMD_MEMORY_LIMIT=-5 LD_PRELOAD="$LIBMEMD" "$PROGS/cxx" 3 2>"$tmp/err") || rc=$?
n=$(wc -l <"$tmp/err")
[ "$rc" -eq 0 ] && [ "$out" = "$ref" ] || bad "three bad values: exit $rc, stdout '$out'"
[ "$n" -eq 3 ] || bad "three bad values: $n stderr lines, want 3: $(tr '\n' '|' <"$tmp/err")"
# A bad value with gctrace still on: the default is used, tracing works.
MEMD_PROFILE_RATE=banana MEMD_DEBUG=gctrace=1 run_preloaded "$PROGS/seed" -t 1 -n 4096 -g >/dev/null 2>"$tmp/err" || bad "seed with a bad rate exited $?"
grep -v MEMD_PROFILE_RATE "$tmp/err" >"$tmp/err2" || true
check_trace "$tmp/err2" 2 1

[ "$failed" -eq 0 ] || fail "$failed gctrace/environment check(s) failed"
echo "PASS: gctrace and scvg lines in the seed grammar; bad values warn once"
