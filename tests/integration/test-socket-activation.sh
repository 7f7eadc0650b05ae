#!/bin/bash
# test-socket-activation.sh - memd takes its socket from systemd (sd_listen_fds), as under memd.socket.
#
# Runs memd under the real systemd-socket-activate, which creates and listens
# on the socket and passes it as fd 3 with LISTEN_FDS/LISTEN_PID; memd gets no
# --socket.  memctl status must answer on that socket, the fake agent must
# attach through it and be listed, and SIGTERM must stop memd with exit 0.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
ACTIVATE=$(command -v systemd-socket-activate || true)
[ -n "$ACTIVATE" ] || skip "systemd-socket-activate is not installed (Debian: package systemd)"

# systemd-socket-activate execs memd in place (same PID) on the first
# connection; -l makes it listen first.  It prints its own messages on stderr.
"$ACTIVATE" -l "$sock" "$MEMD" --log-target stderr 2>"$tmp/memd.log" &
memd_pid=$!
wait_socket systemd-socket-activate
note "systemd-socket-activate $memd_pid listening on $sock"

note "memctl status activates memd and is answered on the passed socket"
ctl status >"$tmp/status" 2>"$tmp/ctl.err" || fail "memctl status failed: $(cat "$tmp/ctl.err"); memd log: $(cat "$tmp/memd.log")"
grep -Eq "$head_re" "$tmp/status" || bad "no status header: $(cat "$tmp/status")"
[ "$(wc -l <"$tmp/status")" -eq 1 ] || bad "status lists processes before any attached: $(cat "$tmp/status")"
grep -q 'listening on the socket systemd passed' "$tmp/memd.log" ||
        bad "memd did not take the socket from systemd (sd_listen_fds): $(cat "$tmp/memd.log")"
comm=$(cat "/proc/$memd_pid/comm" 2>/dev/null || true)
[ "$comm" = memd ] || bad "PID $memd_pid is '$comm', not memd: systemd-socket-activate should exec memd in place"

note "fake-agent attaches through the same socket"
attach_fake_agent
grep -q "attach pid $agent_pid\|attach.*$agent_pid" "$tmp/memd.log" || bad "memd logged no attach for $agent_pid"
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=

note "SIGTERM by PID: memd exits 0"
stop_memd
grep -q 'stopped' "$tmp/memd.log" || bad "memd did not log that it stopped"

finish
