#!/bin/bash
# test-memd-status.sh - memd and memctl status end to end: attach, figures, errors, detach, bad bytes, SIGTERM.
#
# Starts memd on a private socket, attaches tests/progs/fake-agent (HELLO +
# one MEMSTATS with known figures), and checks what memctl prints, its exit
# codes and messages; then kills the agent (it must vanish from status within
# 2 s), sends garbage on a raw connection (memd must keep answering), and
# stops memd with SIGTERM (exit 0, socket removed).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
command -v python3 >/dev/null || skip "python3 is needed to send raw bytes on the socket"

# expect_exit WANT PATTERN CMD...: CMD exits WANT and its stderr matches PATTERN.
expect_exit() {
        local want=$1 pattern=$2 r=0
        shift 2
        "$@" >"$tmp/out" 2>"$tmp/err" || r=$?
        [ "$r" -eq "$want" ] || bad "'$*' exited $r, want $want (stderr: $(cat "$tmp/err"))"
        grep -Eq -- "$pattern" "$tmp/err" || bad "'$*': stderr does not match '$pattern': $(cat "$tmp/err")"
}

"$MEMD" --socket "$sock" --log-target stderr --request-timeout 1 2>"$tmp/memd.log" &
memd_pid=$!
wait_socket memd
note "memd $memd_pid on $sock"

note "status with no process: the header only"
ctl status >"$tmp/status" || fail "memctl status failed"
grep -Eq "$head_re" "$tmp/status" || bad "no status header: $(cat "$tmp/status")"
[ "$(wc -l <"$tmp/status")" -eq 1 ] || bad "status lists processes before any attached: $(cat "$tmp/status")"

note "a second memd on the same socket refuses to start"
expect_exit 1 'another memd is already answering' "$MEMD" --socket "$sock" --log-target stderr

note "fake-agent attaches"
attach_fake_agent

ctl status "$agent_pid" >"$tmp/one" || bad "memctl status $agent_pid failed"
grep -Eq '^ +HeapAlloc +117\.7 MiB$' "$tmp/one" || bad "status PID: no HeapAlloc 117.7 MiB: $(cat "$tmp/one")"
grep -Eq '^ +HeapObjects +600$' "$tmp/one" || bad "status PID: no HeapObjects 600: $(cat "$tmp/one")"
ctl --json status "$agent_pid" >"$tmp/json" || bad "memctl --json status $agent_pid failed"
grep -q '"HeapAlloc": 123456789' "$tmp/json" || bad "--json status PID has no \"HeapAlloc\": 123456789: $(head -c 300 "$tmp/json")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["memstats"]["HeapReleased"] == 52428800' "$tmp/json" \
        || bad "--json status PID is not JSON with HeapReleased 52428800"
ctl --json status >"$tmp/json" || bad "memctl --json status failed"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [p["pid"] for p in d["processes"]] == [int(sys.argv[2])]' \
        "$tmp/json" "$agent_pid" || bad "--json status does not list exactly pid $agent_pid"

if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
        note "another user (nobody) sees neither the list entry nor the process"
        chmod o+x "$tmp"
        as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
        as_nobody "$MEMCTL" --socket "$sock" status >"$tmp/status" 2>&1 || bad "status as nobody failed: $(cat "$tmp/status")"
        ! grep -Eq "^ *$agent_pid " "$tmp/status" || bad "nobody sees root's pid $agent_pid in status"
        expect_exit 1 "^memctl: permission denied: process $agent_pid belongs to another user \\(run as root or as its owner\\)\$" \
                as_nobody "$MEMCTL" --socket "$sock" status "$agent_pid"
else
        note "not root or no setpriv: the other-user check is not run"
fi

note "errors: not attached, not running, usage"
expect_exit 1 '^memctl: process 1 is not attached to memd: is it running with libmemd\?$' ctl status 1
expect_exit 1 "^memctl: memd is not running \\(no socket at $tmp/nosuch.sock\\): start it with 'systemctl start memd'" \
        "$MEMCTL" --socket "$tmp/nosuch.sock" status
expect_exit 2 'unknown command' ctl bogus
expect_exit 2 'usage' ctl status 1 2
expect_exit 2 'not a process ID' ctl status abc
expect_exit 2 '^memctl: set: ProfileRate: ' ctl set "$agent_pid" profile-rate=lots
expect_exit 2 'expected KEY=VALUE' ctl set "$agent_pid" profile-rate
expect_exit 1 '^memctl: process 1 is not attached to memd' ctl set 1 profile-rate=1
note "the fake agent never answers requests: gc times out with a clear message"
expect_exit 1 "^memctl: gc: process $agent_pid did not answer within 1 s" ctl gc "$agent_pid"
expect_exit 1 "^memctl: process 1 is not attached to memd: is it running with libmemd\\?\$" ctl free-os-memory 1

note "the agent is killed: it leaves status within 2 s"
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
gone=
for _ in $(seq 20); do
        ctl status >"$tmp/status" 2>&1 || true
        if ! grep -Eq "^ *$agent_pid " "$tmp/status"; then gone=1; break; fi
        sleep 0.1
done
[ -n "$gone" ] || bad "pid $agent_pid still listed 2 s after it was killed: $(cat "$tmp/status")"
grep -q "detach pid $agent_pid" "$tmp/memd.log" || bad "memd logged no detach for $agent_pid"
agent_pid=

note "an agent that exits while its connection stays open (pidfd) leaves status within 2 s"
holder_pid=
"$PROGS/fake-agent" "$sock" --exit-keeping-socket >"$tmp/agent.out"
dead_pid=$(sed -n 's/^ready //p' "$tmp/agent.out")
holder_pid=$(sed -n 's/^holder //p' "$tmp/agent.out")
if [ -z "$dead_pid" ] || [ -z "$holder_pid" ]; then
        fail "fake-agent --exit-keeping-socket printed: $(cat "$tmp/agent.out")"
fi
agent_pid=$holder_pid
gone=
for _ in $(seq 20); do
        ctl status >"$tmp/status" 2>&1 || true
        if grep -q "detach pid $dead_pid" "$tmp/memd.log" && ! grep -Eq "^ *$dead_pid " "$tmp/status"; then gone=1; break; fi
        sleep 0.1
done
[ -n "$gone" ] || bad "pid $dead_pid (exited, connection held by $holder_pid) not detached within 2 s: $(cat "$tmp/status")"
kill -KILL "$holder_pid"
wait "$holder_pid" 2>/dev/null || true
agent_pid=

note "garbage on a raw connection closes that one connection only"
python3 - "$sock" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"\xc1 this is not msgpack \xff" * 64)
s.settimeout(2)
try:
    while s.recv(4096):
        pass
except (socket.timeout, ConnectionResetError):
    pass
PY
ctl status >"$tmp/status" || bad "memd does not answer status after garbage"
grep -Eq "$head_re" "$tmp/status" || bad "no status header after garbage: $(cat "$tmp/status")"
grep -q 'bad message' "$tmp/memd.log" || bad "memd did not log the bad message"

note "SIGTERM: exit 0, socket removed"
stop_memd
[ ! -e "$sock" ] || bad "memd left its socket behind"

finish
