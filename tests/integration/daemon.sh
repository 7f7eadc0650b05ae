# shellcheck shell=bash disable=SC2034
# daemon.sh - what the memd/memctl integration tests share (sourced after common.sh): the binaries, cleanup by PID, checks that count failures, the fake agent.

need_prog fake-agent
MEMD=$MEMD_BUILD/memd/memd
MEMCTL=$MEMD_BUILD/ctl/memctl
[ -x "$MEMD" ] || skip "memd not built ($MEMD)"
[ -x "$MEMCTL" ] || skip "memctl not built ($MEMCTL)"

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
head_re='^ +PID +COMMAND +UNIT +RSS +HEAP-INUSE +HEAP-IDLE +RELEASED +LIMIT +LAST-GC/SCVG$'

# wait_socket WHAT: $sock appears within 5 s while $memd_pid lives.
wait_socket() {
        for _ in $(seq 50); do
                [ -S "$sock" ] && return 0
                kill -0 "$memd_pid" 2>/dev/null || fail "$1 exited at start: $(cat "$tmp/memd.log")"
                sleep 0.1
        done
        fail "$1 did not create $sock within 5 s: $(cat "$tmp/memd.log")"
}

# attach_fake_agent: starts tests/progs/fake-agent on $sock (agent_pid) and
# waits up to 5 s for memctl status to list it with the figures it sent.
attach_fake_agent() {
        "$PROGS/fake-agent" "$sock" >"$tmp/agent.out" &
        agent_pid=$!
        row_re="^ *$agent_pid +fake-agent +[^ ]+ +1\\.5 GiB +200 MiB +100 MiB +50 MiB +- +-\$"
        for _ in $(seq 50); do
                ctl status >"$tmp/status" 2>&1 || true
                grep -Eq "$row_re" "$tmp/status" && break
                sleep 0.1
        done
        grep -Eq "$row_re" "$tmp/status" || bad "status has no row for pid $agent_pid with the agent's figures: $(cat "$tmp/status")"
}

# stop_memd: SIGTERM by PID, memd must exit 0.
stop_memd() {
        local r=0
        kill -TERM "$memd_pid"
        wait "$memd_pid" || r=$?
        memd_pid=
        [ "$r" -eq 0 ] || bad "memd exited $r on SIGTERM"
}

# finish: fails with memd's log if any check failed.
finish() {
        if [ "$failed" -ne 0 ]; then
                echo "--- memd log" >&2
                cat "$tmp/memd.log" >&2
                fail "$failed check(s) failed"
        fi
        note "ok"
}
