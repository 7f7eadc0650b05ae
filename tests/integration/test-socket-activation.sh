#!/bin/bash
# test-socket-activation.sh - memd takes its socket from systemd (sd_listen_fds), as under memd.socket.
#
# Runs memd under the real systemd-socket-activate, which creates and listens
# on the socket and passes it as fd 3 with LISTEN_FDS/LISTEN_PID; memd gets no
# --socket.  memctl status must answer on that socket, the fake agent must
# attach through it and be listed, and SIGTERM must stop memd with exit 0.
. "$(dirname "$0")/common.sh"
need_prog fake-agent

MEMD=$MEMD_BUILD/memd/memd
MEMCTL=$MEMD_BUILD/ctl/memctl
[ -x "$MEMD" ] || skip "memd not built ($MEMD)"
[ -x "$MEMCTL" ] || skip "memctl not built ($MEMCTL)"
ACTIVATE=$(command -v systemd-socket-activate || true)
[ -n "$ACTIVATE" ] || skip "systemd-socket-activate is not installed (Debian: package systemd)"

sock=$tmp/memd.sock
memd_pid=
agent_pid=
cleanup() {
        [ -z "$agent_pid" ] || kill -KILL "$agent_pid" 2>/dev/null || true
        [ -z "$memd_pid" ] || kill -KILL "$memd_pid" 2>/dev/null || true
        wait 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT

failed=0
bad() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
ctl() { "$MEMCTL" --socket "$sock" "$@"; }

# systemd-socket-activate execs memd in place (same PID) on the first
# connection; -l makes it listen first.  It prints its own messages on stderr.
"$ACTIVATE" -l "$sock" "$MEMD" --log-target stderr 2>"$tmp/memd.log" &
memd_pid=$!
for _ in $(seq 50); do
        [ -S "$sock" ] && break
        kill -0 "$memd_pid" 2>/dev/null || fail "systemd-socket-activate exited at start: $(cat "$tmp/memd.log")"
        sleep 0.1
done
[ -S "$sock" ] || fail "systemd-socket-activate did not create $sock within 5 s: $(cat "$tmp/memd.log")"
note "systemd-socket-activate $memd_pid listening on $sock"

note "memctl status activates memd and is answered on the passed socket"
ctl status >"$tmp/status" 2>"$tmp/ctl.err" || fail "memctl status failed: $(cat "$tmp/ctl.err"); memd log: $(cat "$tmp/memd.log")"
head_re='^ +PID +COMMAND +UNIT +RSS +HEAP-INUSE +HEAP-IDLE +RELEASED$'
grep -Eq "$head_re" "$tmp/status" || bad "no status header: $(cat "$tmp/status")"
[ "$(wc -l <"$tmp/status")" -eq 1 ] || bad "status lists processes before any attached: $(cat "$tmp/status")"
grep -q 'listening on the socket systemd passed' "$tmp/memd.log" ||
        bad "memd did not take the socket from systemd (sd_listen_fds): $(cat "$tmp/memd.log")"
comm=$(cat "/proc/$memd_pid/comm" 2>/dev/null || true)
[ "$comm" = memd ] || bad "PID $memd_pid is '$comm', not memd: systemd-socket-activate should exec memd in place"

note "fake-agent attaches through the same socket"
"$PROGS/fake-agent" "$sock" >"$tmp/agent.out" &
agent_pid=$!
row_re="^ *$agent_pid +fake-agent +[^ ]+ +1\\.5 GiB +200 MiB +100 MiB +50 MiB\$"
for _ in $(seq 50); do
        ctl status >"$tmp/status" 2>&1 || true
        grep -Eq "$row_re" "$tmp/status" && break
        sleep 0.1
done
grep -Eq "$row_re" "$tmp/status" || bad "status has no row for pid $agent_pid with the agent's figures: $(cat "$tmp/status")"
grep -q "attach pid $agent_pid\|attach.*$agent_pid" "$tmp/memd.log" || bad "memd logged no attach for $agent_pid"
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=

note "SIGTERM by PID: memd exits 0"
kill -TERM "$memd_pid"
r=0
wait "$memd_pid" || r=$?
memd_pid=
[ "$r" -eq 0 ] || bad "memd exited $r on SIGTERM"
grep -q 'stopped' "$tmp/memd.log" || bad "memd did not log that it stopped"

if [ "$failed" -ne 0 ]; then
        echo "--- memd log" >&2
        cat "$tmp/memd.log" >&2
        fail "$failed check(s) failed"
fi
note "ok"
