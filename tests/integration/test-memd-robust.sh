#!/bin/bash
# test-memd-robust.sh - memd against bad and hostile clients: malformed, truncated, oversized and unknown messages, a claimed PID, a client that never reads, connection storms, short-lived processes; memd must close only the offender and keep serving.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
command -v python3 >/dev/null || skip "python3 is needed for the raw clients"
RAW=$MEMD_SRC/tests/integration/rawclient.py

"$MEMD" --socket "$sock" --log-target stderr 2>"$tmp/memd.log" &
memd_pid=$!
wait_socket memd
fds_start=$(ls /proc/"$memd_pid"/fd | wc -l)

# One process with MemStats attached, so status replies have some size.
export MEMD_SOCKET=$sock
LD_PRELOAD=$LIBMEMD sleep 120 &
agent_pid=$!
for _ in $(seq 100); do
        ctl status "$agent_pid" 2>/dev/null | grep -q '^  HeapAlloc' && break
        sleep 0.05
done
ctl status "$agent_pid" | grep -q '^  HeapAlloc' || fail "sleep under libmemd did not attach: $(cat "$tmp/memd.log")"

# alive WHAT: memd is running and answers status within a second.
alive() {
        kill -0 "$memd_pid" 2>/dev/null || fail "memd died after $1: $(tail -20 "$tmp/memd.log")"
        timed ctl status >"$tmp/status" 2>&1 || bad "status failed after $1: $(cat "$tmp/status")"
        awk -v e="$elapsed" 'BEGIN { exit !(e < 1.0) }' || bad "status took $elapsed s after $1"
        grep -Eq "^ *$agent_pid " "$tmp/status" || bad "the attached process vanished after $1"
}

for s in garbage truncated oversized deep unknown before-hello; do
        note "$s"
        python3 "$RAW" "$sock" "$s" >"$tmp/raw.out" 2>&1 || bad "$s: $(cat "$tmp/raw.out")"
        alive "$s"
done
grep -q 'Message too long' "$tmp/memd.log" || bad "memd did not log the oversized message"

note "claim-pid: an agent claiming pid 1 is attached as itself"
mkfifo "$tmp/hold"
python3 "$RAW" "$sock" claim-pid <"$tmp/hold" >"$tmp/claim.out" 2>&1 &
claim=$!
exec 7>"$tmp/hold"
for _ in $(seq 100); do grep -q '^attached-as' "$tmp/claim.out" && break; sleep 0.05; done
claimed=$(sed -n 's/^attached-as //p' "$tmp/claim.out")
[ -n "$claimed" ] || bad "claim-pid did not attach: $(cat "$tmp/claim.out")"
ctl status >"$tmp/status"
grep -Eq "^ *$claimed +python3 " "$tmp/status" || bad "the claiming client is not listed as its real pid $claimed: $(cat "$tmp/status")"
ctl status 1 >/dev/null 2>&1 && bad "pid 1 is listed as attached"
grep -q "pid $claimed claims to be pid 1" "$tmp/memd.log" || bad "memd did not log the false claim"
exec 7>&-
wait "$claim" || bad "claim-pid: $(cat "$tmp/claim.out")"
alive claim-pid

note "no-read: a client that never reads is closed, the others are served meanwhile"
python3 "$RAW" "$sock" no-read >"$tmp/noread.out" 2>&1 &
noread=$!
sleep 1
alive "no-read (running)"
wait "$noread" || bad "no-read: $(cat "$tmp/noread.out")"
grep -q "cannot reply: No buffer space available" "$tmp/memd.log" || bad "memd did not close the non-reader for its bounded output"
alive no-read

note "storm: 2,500 connections opened and dropped"
python3 "$RAW" "$sock" storm >"$tmp/storm.out" 2>&1 || bad "storm: $(cat "$tmp/storm.out")"
alive storm

note "40 short-lived processes under libmemd at once"
shorts=()
for i in $(seq 40); do
        LD_PRELOAD=$LIBMEMD sleep 0.$((i % 5 + 1)) &
        shorts+=($!)
done
for p in "${shorts[@]}"; do wait "$p" || true; done
for _ in $(seq 40); do
        ctl status >"$tmp/status"
        [ "$(grep -c ' sleep ' "$tmp/status")" -eq 1 ] && break
        sleep 0.05
done
[ "$(grep -c ' sleep ' "$tmp/status")" -eq 1 ] || bad "short-lived processes still listed 2 s after they exited: $(cat "$tmp/status")"
alive "short-lived processes"

fds_end=$(ls /proc/"$memd_pid"/fd | wc -l)
note "memd fds: $fds_start at start (+2 for the agent), $fds_end at the end"
[ "$fds_end" -le $((fds_start + 2)) ] || bad "memd holds $fds_end fds, $fds_start at start: a leak"
stop_memd
finish
