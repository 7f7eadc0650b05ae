#!/bin/bash
# nspawn-check.sh - the checks test-nspawn.sh runs inside its container, as memd-nspawn-test.service under systemd as PID 1.
#
# Not a test of its own: test-nspawn.sh copies it into the container's root
# and boots the container; this script then runs as a oneshot unit and writes
# one line per check to $TEST_OUT/results ("PASS name" or "FAIL name: why"),
# "DONE" last, plus what a failure needs to be understood (the journal, the
# client's output).  The host reads them after the container has powered off.
#
# Set by the unit: TEST_OUT (the directory bind-mounted from the host),
# TEST_LIBMEMD (the installed libmemd.so), TEST_PROGS (seed, fake-agent).
# shellcheck disable=SC2317 # functions called through poll and trap
set -uo pipefail

out=${TEST_OUT:?}
lib=${TEST_LIBMEMD:?}
progs=${TEST_PROGS:?}
res=$out/results
work=$(mktemp -d)
unit=memd-nspawn-test.service
sock=/run/memd/memd.sock
: >"$res"

# Progress goes to the journal and, through the unit's StandardOutput, to the
# container's console, which the host shows when something failed.
say() { echo "nspawn-check: $*"; }
pass() { echo "PASS $1" >>"$res"; say "PASS $1"; }
bad() { echo "FAIL $1: $2" >>"$res"; say "FAIL $1: $2"; }
# oneline FILE: a file's content on one line, for a result's reason.
oneline() { tr '\n' '|' <"$1" | cut -c1-600; }

# poll SECONDS CMD...: runs CMD every 0.1 s until it succeeds or SECONDS
# (of wall time, at least) have passed.
poll() {
        local end=$((SECONDS + $1 + 1))
        shift
        while ! "$@"; do
                [ "$SECONDS" -lt "$end" ] || return 1
                sleep 0.1
        done
}

# Nothing from the unit's environment may reach the client but what is set
# below: MEMD_SOCKET unset, so libmemd uses the default /run/memd/memd.sock.
for v in $(env | sed -n 's/^\(MEMD_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset LD_PRELOAD

seed_pid=
fake_pid=
completed=
# Whatever stops the script (an error, TimeoutStartSec's SIGTERM) is a failed
# check: the host must not take missing checks for passed ones.
finish() {
        local rc=$?
        [ -n "$completed" ] || bad "nspawn-check.sh runs to its end" "stopped early (status $rc)"
        [ -z "$seed_pid" ] || kill -KILL "$seed_pid" 2>/dev/null
        [ -z "$fake_pid" ] || kill -KILL "$fake_pid" 2>/dev/null
        journalctl -b --no-pager -o short-monotonic >"$out/journal.txt" 2>&1
        cp "$work"/* "$out/" 2>/dev/null
        echo DONE >>"$res"
        say "done; powering off"
        systemctl --no-block poweroff
}
trap finish EXIT
trap 'exit 143' TERM

# --- memd.socket --------------------------------------------------------------
say "systemctl start memd.socket"
if systemctl start memd.socket >"$work/start.err" 2>&1; then
        pass "systemctl start memd.socket"
else
        bad "systemctl start memd.socket" "$(oneline "$work/start.err"); $(systemctl status memd.socket 2>&1 | tr '\n' '|' | cut -c1-400)"
fi
if [ -S "$sock" ]; then pass "memd.socket listens on $sock"; else bad "memd.socket listens on $sock" "no socket there"; fi
# Socket activation: nothing has connected yet, so memd must not be running.
st=$(systemctl is-active memd.service)
if [ "$st" = inactive ]; then pass "memd.service not started before the first connection"; else bad "memd.service not started before the first connection" "it is $st"; fi

# --- a client under libmemd -----------------------------------------------------
# seed -w: fills a 100k-entry cache (~110 MiB), registers its reclaimer (which
# evicts the cache), then waits for SIGTERM; the forced GC comes from memctl.
say "starting seed under libmemd"
LD_PRELOAD=$lib MEMD_DEBUG=gctrace=1 "$progs/seed" -m reclaimer -n 100000 -w >"$work/seed.out" 2>"$work/seed.err" &
seed_pid=$!
seed_waits() { grep -q '^waiting pid=' "$work/seed.out" || ! kill -0 "$seed_pid" 2>/dev/null; }
poll 30 seed_waits
if grep -q "^waiting pid=$seed_pid\$" "$work/seed.out" && grep -q ' lib=memd$' "$work/seed.out" &&
   grep -q libmemd "/proc/$seed_pid/maps"; then
        pass "seed runs under libmemd (pid $seed_pid)"
else
        bad "seed runs under libmemd (pid $seed_pid)" "stdout: $(oneline "$work/seed.out") stderr: $(oneline "$work/seed.err")"
fi

# Before any memctl call: only the client's own connection can have started memd.
active() { [ "$(systemctl is-active memd.service)" = active ]; }
if poll 10 active; then
        pass "the client's connection socket-activated memd.service"
else
        bad "the client's connection socket-activated memd.service" "memd.service is $(systemctl is-active memd.service) 10 s after the client started"
fi

listed() {
        memctl status >"$work/status.txt" 2>&1 && awk -v p="$1" '$1 == p { f = 1 } END { exit !f }' "$work/status.txt"
}
if poll 10 listed "$seed_pid"; then
        row=$(awk -v p="$seed_pid" '$1 == p' "$work/status.txt")
        pass "memctl status lists the client: $row"
        # shellcheck disable=SC2086 # the row's columns
        set -- $row
        if [ "${2:-}" = seed ] && [ "${3:-}" = "$unit" ]; then
                pass "its row names command seed and unit $unit"
        else
                bad "its row names command seed and unit $unit" "row: $row"
        fi
else
        bad "memctl status lists the client" "no row for $seed_pid after 10 s: $(oneline "$work/status.txt")"
fi

if memctl status "$seed_pid" >"$work/status-pid.txt" 2>&1 && grep -q "$seed_pid" "$work/status-pid.txt" &&
   grep -q HeapAlloc "$work/status-pid.txt"; then
        pass "memctl status $seed_pid"
else
        bad "memctl status $seed_pid" "$(oneline "$work/status-pid.txt")"
fi

if memctl free-os-memory "$seed_pid" >"$work/free-os-memory.txt" 2>&1 && grep -q '^scvg-1: ' "$work/free-os-memory.txt"; then
        pass "memctl free-os-memory $seed_pid prints its scvg-1 lines"
else
        bad "memctl free-os-memory $seed_pid prints its scvg-1 lines" "exit/output: $(oneline "$work/free-os-memory.txt")"
fi

# The journal: memd logs the client's events with MEMD_PID/MEMD_EVENT fields.
journal_has() { # EVENT REGEX
        journalctl --no-pager -o cat "MEMD_PID=$seed_pid" "MEMD_EVENT=$1" >"$work/journal-$1.txt" 2>&1 &&
                grep -Eq "$2" "$work/journal-$1.txt"
}
for ev in attach gc scvg; do
        case $ev in
        attach) re="$seed_pid" ;;
        gc) re='^gc [0-9]+ @[0-9.]+s [0-9]+%: .* MB, .* [0-9]+ P \(forced\)$' ;;
        scvg) re='^scvg-1: [0-9]+ MB released$' ;;
        esac
        if poll 5 journal_has "$ev" "$re"; then
                pass "journalctl MEMD_PID=$seed_pid MEMD_EVENT=$ev: $(grep -Em1 "$re" "$work/journal-$ev.txt")"
        else
                bad "journalctl MEMD_PID=$seed_pid MEMD_EVENT=$ev" "no line matching /$re/: $(oneline "$work/journal-$ev.txt")"
        fi
done

# The client itself: the forced GC ran its reclaimer, and gctrace=1 printed it.
kill -TERM "$seed_pid" 2>/dev/null
rc=0
wait "$seed_pid" || rc=$?
seed_pid=
calls=$(sed -n 's/^exit .*reclaimer_calls=\([0-9]*\).*/\1/p' "$work/seed.out")
if [ "$rc" -eq 0 ] && [ "${calls:-0}" -ge 1 ]; then
        pass "the forced GC ran the client's reclaimer: $(grep '^exit ' "$work/seed.out")"
else
        bad "the forced GC ran the client's reclaimer" "seed exit $rc, stdout: $(oneline "$work/seed.out")"
fi
# The cache was ~110 MiB of RSS after the fill; evicted and scavenged, most of it
# must be back with the OS.
fill_kib=$(sed -n 's/^fill rss_kib=\([0-9]*\).*/\1/p' "$work/seed.out")
exit_kib=$(sed -n 's/^exit .*rss_kib=\([0-9]*\).*/\1/p' "$work/seed.out")
if [ -n "$fill_kib" ] && [ -n "$exit_kib" ] && [ "$exit_kib" -lt $((fill_kib / 2)) ]; then
        pass "free-os-memory gave the cache's memory back: RSS $((fill_kib / 1024)) MiB after the fill, $((exit_kib / 1024)) MiB after"
else
        bad "free-os-memory gave the cache's memory back" "RSS after the fill ${fill_kib:-?} KiB, at exit ${exit_kib:-?} KiB"
fi
if grep -Eq '^gc [0-9]+ @' "$work/seed.err"; then
        pass "MEMD_DEBUG=gctrace=1: the client printed its gc line: $(grep -Em1 '^gc [0-9]+ @' "$work/seed.err")"
else
        bad "MEMD_DEBUG=gctrace=1: the client printed its gc line" "stderr: $(oneline "$work/seed.err")"
fi

# --- memd itself, with a minimal agent --------------------------------------------
# fake-agent speaks the protocol without libmemd: these checks hold whatever
# state libmemd's agent is in.
"$progs/fake-agent" "$sock" >"$work/fake-agent.out" 2>&1 &
fake_pid=$!
if poll 10 listed "$fake_pid"; then
        pass "memctl status lists fake-agent: $(awk -v p="$fake_pid" '$1 == p' "$work/status.txt")"
else
        bad "memctl status lists fake-agent" "no row for $fake_pid: $(oneline "$work/status.txt"); fake-agent: $(oneline "$work/fake-agent.out")"
fi
# Restart=on-failure would hide a crash behind "active": count the restarts.
restarts=$(systemctl show -p NRestarts --value memd.service)
if active && [ "$restarts" = 0 ]; then
        pass "memd.service is active, never restarted"
else
        bad "memd.service is active, never restarted" "it is $(systemctl is-active memd.service), NRestarts=$restarts"
fi

# The catalog installed under /usr/local is found and explains memd's entries.
if journalctl --update-catalog >"$work/catalog.err" 2>&1 && [ ! -s "$work/catalog.err" ]; then
        pass "journalctl --update-catalog"
else
        bad "journalctl --update-catalog" "$(oneline "$work/catalog.err")"
fi
subject="Subject: Process $fake_pid (fake-agent) attached to memd"
catalog_ok() {
        journalctl -x --no-pager "MEMD_PID=$fake_pid" MEMD_EVENT=attach >"$work/journal-x.txt" 2>&1 &&
                grep -qF "$subject" "$work/journal-x.txt"
}
if poll 5 catalog_ok; then
        pass "journalctl -x explains the attach entry: $subject"
else
        bad "journalctl -x explains the attach entry" "no '$subject' in: $(oneline "$work/journal-x.txt")"
fi

# Stopped, memd comes back on the next connection (memd.socket still listens).
systemctl stop memd.service
if memctl status >"$work/status-again.txt" 2>&1 && active; then
        pass "memd.service stopped, then socket-activated again by memctl"
else
        bad "memd.service stopped, then socket-activated again by memctl" "memctl: $(oneline "$work/status-again.txt"); memd.service is $(systemctl is-active memd.service)"
fi

completed=1
exit 0
