#!/bin/bash
# test-memd-agent.sh - real programs under libmemd report to memd: status, gc, free-os-memory, trace, a stopped process, fork, memd SIGKILLed and restarted, another user.
#
# memd runs on a private socket with a 5 s request timeout.  The clients are
# tests/progs/seed (a 256 MiB cache, emptied, waiting: the seed scenario from
# outside) and tests/progs/callsites (known call sites at MEMD_PROFILE_RATE=1,
# so memd's copy of its profile must equal what the process writes itself).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
need_prog seed callsites
command -v python3 >/dev/null || skip "python3 is needed to read memctl's JSON"

export MEMD_SOCKET=$sock
pids=()
cleanup_clients() {
        local p
        for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
}
trap 'cleanup_clients; cleanup' EXIT

start_memd() {
        "$MEMD" --socket "$sock" --log-target stderr --request-timeout 5 2>>"$tmp/memd.log" &
        memd_pid=$!
        wait_socket memd
}

# json_get PID EXPR: evaluates EXPR over memctl --json status PID (as d).
json_get() {
        ctl --json status "$1" >"$tmp/j.json" 2>"$tmp/j.err" || return 1
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$tmp/j.json" "$2"
}

# wait_attached PID SECONDS: PID is listed with MemStats and a complete profile within SECONDS.
wait_attached() {
        local i
        for i in $(seq $(($2 * 20))); do
                [ "$(json_get "$1" '"memstats" in d' 2>/dev/null)" = True ] && return 0
                sleep 0.05
        done
        return 1
}

# wait_line FILE PATTERN: FILE has a line matching PATTERN within 5 s.
wait_line() {
        for _ in $(seq 100); do
                grep -Eq -- "$2" "$1" 2>/dev/null && return 0
                sleep 0.05
        done
        return 1
}

start_memd
note "memd $memd_pid on $sock"

note "seed: a 256 MiB cache, filled, emptied but for one entry that pins the heap, waiting"
MEMD_DEBUG=gctrace=1 LD_PRELOAD=$LIBMEMD "$PROGS/seed" -t 2 -n 262144 -k -m app -w >"$tmp/seed.out" 2>"$tmp/seed.err" &
seed_pid=$!
pids+=("$seed_pid")
wait_line "$tmp/seed.out" '^waiting' || fail "seed did not get to waiting: $(cat "$tmp/seed.out" "$tmp/seed.err")"
wait_attached "$seed_pid" 5 || fail "seed (pid $seed_pid) not attached with MemStats within 5 s: $(cat "$tmp/j.err" "$tmp/memd.log")"
ctl status >"$tmp/status" || bad "memctl status failed"
grep -Eq "^ *$seed_pid +seed " "$tmp/status" || bad "status has no row for seed: $(cat "$tmp/status")"
ctl status "$seed_pid" >"$tmp/one" || bad "memctl status $seed_pid failed"
for re in '^  HeapReleased ' '^  PauseNs ' '^RSS: +[0-9.]+ [KMG]iB = anon ' 'idle heap still resident' \
        '^Profile: +[1-9][0-9]* stacks at rate 512 KiB'; do
        grep -Eq "$re" "$tmp/one" || bad "status $seed_pid lacks /$re/: $(cat "$tmp/one")"
done

note "memctl trace follows the process"
ctl trace "$seed_pid" >"$tmp/trace.out" 2>"$tmp/trace.err" &
trace_pid=$!
pids+=("$trace_pid")
wait_line "$tmp/trace.err" 'following gc/scvg events of process' || bad "trace did not start: $(cat "$tmp/trace.err")"

note "free-os-memory: the emptied cache goes back to the OS"
rss_before=$(json_get "$seed_pid" 'd["memstats"]["RSS"]')
ctl free-os-memory "$seed_pid" >"$tmp/free.out" 2>&1 || bad "free-os-memory failed: $(cat "$tmp/free.out")"
cat "$tmp/free.out"
grep -Eq '^gc [0-9]+ @[0-9.]+s [0-9]+%: .* \(forced\)$' "$tmp/free.out" || bad "free-os-memory printed no gc line"
grep -Eq '^scvg-1: [0-9]+ MB released$' "$tmp/free.out" || bad "free-os-memory printed no 'scvg-1: N MB released'"
grep -Eq '^scvg-1: inuse: [0-9]+, idle: [0-9]+, sys: [0-9]+, released: [0-9]+, consumed: [0-9]+ \(MB\)$' \
        "$tmp/free.out" || bad "free-os-memory printed no scvg-1 inuse line"
grep -Eq '^RSS [0-9.]+ [KMG]iB -> [0-9.]+ [KMG]iB \(released' "$tmp/free.out" || bad "no 'RSS before -> after' line"
ctl --json free-os-memory "$seed_pid" >"$tmp/free.json" || bad "--json free-os-memory failed"
rss_after=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rss_after_bytes"])' "$tmp/free.json")
note "RSS $((rss_before >> 20)) MiB before, $((rss_after >> 20)) MiB after"
[ "$rss_before" -gt $((200 << 20)) ] || bad "seed's RSS before is only $rss_before: the test proves nothing"
[ "$rss_after" -lt $((48 << 20)) ] || bad "RSS after free-os-memory is $rss_after, want < 48 MiB"

note "gc: the process's reclaimers, one gctrace line"
ctl gc "$seed_pid" >"$tmp/gc.out" 2>&1 || bad "memctl gc failed: $(cat "$tmp/gc.out")"
grep -Eq '^gc [0-9]+ @[0-9.]+s [0-9]+%: [0-9.]+\+[0-9.]+\+[0-9.]+ ms clock, .* MB goal, [0-9]+ P \(forced\)$' \
        "$tmp/gc.out" || bad "memctl gc printed no gctrace line: $(cat "$tmp/gc.out")"
grep -q '^gc .*(forced)' "$tmp/seed.err" || bad "the process printed no gctrace line itself (MEMD_DEBUG=gctrace=1)"
wait_line "$tmp/trace.out" "^$seed_pid: scvg-1: [0-9]+ MB released\$" || bad "trace has no scvg-1 line: $(cat "$tmp/trace.out")"
wait_line "$tmp/trace.out" "^$seed_pid: gc [0-9]+ @.*\\(forced\\)\$" || bad "trace has no gc line"
grep -Eq "^memd: pid $seed_pid \\(seed\\): scvg-1: [0-9]+ MB released" "$tmp/memd.log" || bad "memd logged no scvg line"
[ "$(json_get "$seed_pid" 'len(d["events"]) >= 4')" = True ] || bad "status $seed_pid keeps fewer than 4 events"
kill "$trace_pid"

note "a stopped process: gc times out after 5 s, memd keeps answering everyone"
kill -STOP "$seed_pid"
t0=$(date +%s%N)
ctl gc "$seed_pid" >"$tmp/stopped.out" 2>&1 &
gc_pid=$!
sleep 0.2
timed ctl status >/dev/null || bad "status failed while a request waits on a stopped process"
awk -v e="$elapsed" 'BEGIN { exit !(e < 1.0) }' || bad "status took $elapsed s while a gc waits on a stopped process"
r=0
wait "$gc_pid" || r=$?
t1=$(date +%s%N)
[ "$r" -eq 1 ] || bad "gc of a stopped process exited $r, want 1"
grep -q "did not answer within 5 s" "$tmp/stopped.out" || bad "no timeout message: $(cat "$tmp/stopped.out")"
[ $(((t1 - t0) / 1000000)) -lt 8000 ] || bad "gc of a stopped process took $(((t1 - t0) / 1000000)) ms"
kill -CONT "$seed_pid"

note "callsites at MEMD_PROFILE_RATE=1: memd's copy of the profile is the process's own"
MEMD_PROFILE_RATE=1 MEMD_MEMPROFILE=$tmp/callsites.txt LD_PRELOAD=$LIBMEMD "$PROGS/callsites" -s 4 -t 2 -w \
        >"$tmp/cs.out" 2>"$tmp/cs.err" &
cs_pid=$!
pids+=("$cs_pid")
wait_line "$tmp/cs.out" '^waiting' || fail "callsites did not get to waiting: $(cat "$tmp/cs.err")"
wait_attached "$cs_pid" 5 || fail "callsites not attached within 5 s"
sleep 2.5 # two reports: the last delta is in
before=$(json_get "$cs_pid" 'd["profile"]')

note "fork: the child reports as itself"
LD_PRELOAD=$LIBMEMD python3 -c '
import os, sys, time
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
print(pid, flush=True)
time.sleep(30)' >"$tmp/fork.out" &
fork_parent=$!
pids+=("$fork_parent")
wait_line "$tmp/fork.out" '^[0-9]+$' || bad "python did not fork"
fork_child=$(cat "$tmp/fork.out")
pids+=("$fork_child")
wait_attached "$fork_parent" 5 || bad "python (fork parent $fork_parent) not attached"
wait_attached "$fork_child" 5 || bad "forked child $fork_child not attached"

note "memd SIGKILLed and restarted: every process is back within 2 s"
kill -KILL "$memd_pid"
wait "$memd_pid" 2>/dev/null || true
start_memd
t0=$(date +%s%N)
back=
for _ in $(seq 60); do
        ctl status >"$tmp/status" 2>/dev/null || true
        n=0
        for p in "$seed_pid" "$cs_pid" "$fork_parent" "$fork_child"; do
                grep -Eq "^ *$p " "$tmp/status" && n=$((n + 1))
        done
        if [ "$n" -eq 4 ]; then back=1; break; fi
        sleep 0.05
done
t1=$(date +%s%N)
[ -n "$back" ] || bad "not every process reattached within 3 s: $(cat "$tmp/status")"
note "all 4 reattached $(((t1 - t0) / 1000000)) ms after memd restarted"
[ $(((t1 - t0) / 1000000)) -le 2000 ] || bad "reattaching took $(((t1 - t0) / 1000000)) ms, want <= 2000"
wait_attached "$cs_pid" 2 || bad "callsites has no MemStats after the restart"
sleep 0.5
after=$(json_get "$cs_pid" 'd["profile"]')
[ "$before" = "$after" ] || bad "profile totals before the restart $before, after $after"

note "the process's own profile at exit equals memd's copy"
kill -TERM "$cs_pid"
wait "$cs_pid" || bad "callsites exited $?"
header=$(head -1 "$tmp/callsites.txt")
python3 - "$header" "$after" <<'PY' || bad "callsites' own profile ($header) differs from memd's ($after)"
import re, sys, ast
m = re.match(r"heap profile: (\d+): (\d+) \[(\d+): (\d+)\] @ heap/2", sys.argv[1])
d = ast.literal_eval(sys.argv[2])
own = dict(zip(["inuse_objects", "inuse_bytes", "alloc_objects", "alloc_bytes"], map(int, m.groups())))
print("process:", own, "memd:", d)
assert all(own[k] == d[k] for k in own), "differs"
PY

note "another user: refused on root's process, allowed on their own"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && command -v useradd >/dev/null; then
        user=memd-test
        id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
        uid=$(id -u "$user")
        chmod o+rx "$tmp"
        as_user() { setpriv --reuid="$uid" --regid="$(id -g "$user")" --clear-groups "$@"; }
        as_user "$MEMCTL" --socket "$sock" gc "$seed_pid" >"$tmp/perm.out" 2>&1 && bad "memd-test could gc root's process"
        grep -q "^memctl: permission denied: process $seed_pid belongs to another user" "$tmp/perm.out" ||
                bad "no permission-denied message: $(cat "$tmp/perm.out")"
        # Not through as_user: $! must be the process itself, not a subshell.
        setpriv --reuid="$uid" --regid="$(id -g "$user")" --clear-groups \
                env LD_PRELOAD="$LIBMEMD" MEMD_SOCKET="$sock" sleep 30 &
        user_pid=$!
        pids+=("$user_pid")
        wait_attached "$user_pid" 5 || bad "memd-test's own process $user_pid did not attach"
        as_user "$MEMCTL" --socket "$sock" gc "$user_pid" >"$tmp/own.out" 2>&1 ||
                bad "memd-test cannot gc its own process: $(cat "$tmp/own.out")"
        as_user "$MEMCTL" --socket "$sock" status >"$tmp/status" 2>&1
        ! grep -Eq "^ *$seed_pid " "$tmp/status" || bad "memd-test sees root's seed in status"
        grep -Eq "^ *$user_pid " "$tmp/status" || bad "memd-test does not see its own process"

        note "memd --user as memd-test: its processes report to it, root's refuse to"
        mkdir -p "$tmp/xdg"
        chown "$user" "$tmp/xdg"
        chmod 700 "$tmp/xdg"
        usock=$tmp/xdg/memd/memd.sock
        setpriv --reuid="$uid" --regid="$(id -g "$user")" --clear-groups \
                env XDG_RUNTIME_DIR="$tmp/xdg" "$MEMD" --user --log-target stderr 2>"$tmp/user-memd.log" &
        umemd=$!
        pids+=("$umemd")
        for _ in $(seq 50); do [ -S "$usock" ] && break; sleep 0.1; done
        [ -S "$usock" ] || bad "memd --user did not create $usock: $(cat "$tmp/user-memd.log")"
        setpriv --reuid="$uid" --regid="$(id -g "$user")" --clear-groups \
                env LD_PRELOAD="$LIBMEMD" MEMD_SOCKET="$usock" sleep 30 &
        uown=$!
        pids+=("$uown")
        LD_PRELOAD="$LIBMEMD" MEMD_SOCKET="$usock" sleep 30 2>"$tmp/root-to-user.err" &
        uroot=$!
        pids+=("$uroot")
        ok=
        for _ in $(seq 100); do
                "$MEMCTL" --socket "$usock" status >"$tmp/ustatus" 2>&1 || true
                grep -Eq "^ *$uown " "$tmp/ustatus" && { ok=1; break; }
                sleep 0.05
        done
        [ -n "$ok" ] || bad "memd-test's process did not attach to its --user memd: $(cat "$tmp/ustatus")"
        sleep 0.5
        ! grep -Eq "^ *$uroot " "$tmp/ustatus" || bad "a root process reported to memd-test's memd"
        grep -q 'served by another user' "$tmp/root-to-user.err" ||
                bad "the root process did not say why it does not report: $(cat "$tmp/root-to-user.err")"
else
        note "SKIPPED part: not root, or no setpriv/useradd"
fi

note "seed exits: it leaves status"
kill -TERM "$seed_pid"
wait "$seed_pid" || bad "seed exited $?"
grep -q '^exit ' "$tmp/seed.out" || bad "seed did not exit cleanly: $(cat "$tmp/seed.out")"
for _ in $(seq 40); do
        ctl status >"$tmp/status" 2>/dev/null || true
        grep -Eq "^ *$seed_pid " "$tmp/status" || break
        sleep 0.05
done
! grep -Eq "^ *$seed_pid " "$tmp/status" || bad "seed still listed 2 s after it exited"
stop_memd
finish
