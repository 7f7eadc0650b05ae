#!/bin/bash
# test-memd-journal.sh - memd's journal entries, read back with journalctl: attach, gc and scvg of a real program (MESSAGE, MESSAGE_ID, MEMD_* fields), detach, and a policy action.
#
# Uses the running journald; when there is none (containers, CI), starts
# /lib/systemd/systemd-journald by hand as root and stops it by PID at the
# end.  Not root and no journald: skipped.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
need_prog seed
command -v journalctl >/dev/null || skip "journalctl is not installed"
command -v python3 >/dev/null || skip "python3 is needed to read journalctl's JSON"

journald_pid=
seed_pid=
trap '[ -z "$seed_pid" ] || kill -KILL "$seed_pid" 2>/dev/null; [ -z "$journald_pid" ] || kill -TERM "$journald_pid" 2>/dev/null; cleanup' EXIT

# A journald that ran before may have left its socket: look for the process.
if ! pgrep -x systemd-journal >/dev/null; then
        [ "$(id -u)" -eq 0 ] || skip "no journald runs and only root can start one"
        jd=
        for f in /lib/systemd/systemd-journald /usr/lib/systemd/systemd-journald; do
                [ -x "$f" ] && { jd=$f; break; }
        done
        [ -n "$jd" ] || skip "no journald runs and systemd-journald is not installed"
        mkdir -p /run/systemd/journal
        # A journald that ran before left its socket: waiting for the file
        # would let memd's first entries go to a socket nobody reads.
        rm -f /run/systemd/journal/socket /run/systemd/journal/stdout
        "$jd" >"$tmp/journald.log" 2>&1 &
        journald_pid=$!
        for _ in $(seq 50); do
                [ -S /run/systemd/journal/socket ] && break
                sleep 0.1
        done
        [ -S /run/systemd/journal/socket ] || fail "systemd-journald did not create its socket: $(cat "$tmp/journald.log")"
        note "started systemd-journald by hand (pid $journald_pid)"
fi
# The journal takes entries now: a marker goes in and comes back out.
marker="memd-journal-test-$$-$RANDOM"
echo "$marker" | systemd-cat -t memd-journal-test 2>/dev/null || true
for _ in $(seq 50); do
        journalctl --no-pager -q -t memd-journal-test 2>/dev/null | grep -q "$marker" && break
        sleep 0.1
done
journalctl --no-pager -q -t memd-journal-test 2>/dev/null | grep -q "$marker" ||
        fail "the journal does not give back an entry written to it"

"$MEMD" --socket "$sock" --log-target journal 2>"$tmp/memd.log" &
memd_pid=$!
wait_socket memd

export MEMD_SOCKET=$sock
LD_PRELOAD=$LIBMEMD "$PROGS/seed" -t 1 -n 65536 -m app -w >"$tmp/seed.out" 2>&1 &
seed_pid=$!
for _ in $(seq 200); do
        grep -q '^waiting' "$tmp/seed.out" && ctl status "$seed_pid" >/dev/null 2>&1 && break
        sleep 0.05
done
ctl status "$seed_pid" >/dev/null 2>&1 || fail "seed did not attach: $(cat "$tmp/seed.out")"
ctl free-os-memory "$seed_pid" >"$tmp/free.out" 2>&1 || bad "free-os-memory failed: $(cat "$tmp/free.out")"
kill -TERM "$seed_pid"
wait "$seed_pid" || true
stopped=$seed_pid
seed_pid=

# A policy action: a second seed, its emptied 70 MiB cache held over a limit
# memctl sets; memd's own request is a MEMD_EVENT=policy entry.
LD_PRELOAD=$LIBMEMD "$PROGS/seed" -t 1 -n 65536 -m app -k -w >"$tmp/seed2.out" 2>&1 &
seed_pid=$!
for _ in $(seq 200); do
        grep -q '^waiting' "$tmp/seed2.out" && ctl status "$seed_pid" >/dev/null 2>&1 && break
        sleep 0.05
done
ctl set "$seed_pid" memory-limit=16M >/dev/null || bad "memctl set memory-limit failed"
for _ in $(seq 50); do
        journalctl --no-pager -o json MEMD_PID="$seed_pid" MEMD_EVENT=policy >"$tmp/p.json" 2>/dev/null || true
        grep -q '"MEMD_POLICY":"limit"' "$tmp/p.json" && break
        sleep 0.1
done
python3 - "$tmp/p.json" "$seed_pid" <<'PY' || bad "no proper policy entry"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
limit = [e for e in entries if e.get("MEMD_POLICY") == "limit"]
assert limit, entries
e = limit[0]
assert e["MESSAGE_ID"] == "daf29bec8c34488dbd07d18c25445125", e["MESSAGE_ID"]
assert e["MEMD_PID"] == sys.argv[2] and e["MEMD_COMM"] == "seed", e
assert e["MESSAGE"].startswith("policy limit: MemoryLimit: heap held from the OS "), e["MESSAGE"]
assert e["MEMD_LIMIT_BYTES"] == str(16 << 20), e["MEMD_LIMIT_BYTES"]
assert int(e["MEMD_HEAP_SYS_BYTES"]) - int(e["MEMD_HEAP_RELEASED_BYTES"]) > 16 << 20, e
for k in ("MEMD_HEAP_IDLE_BYTES", "MEMD_HEAP_INUSE_BYTES", "MEMD_HEAP_ALLOC_BYTES", "MEMD_IDLE_MEMORY_MAX_BYTES"):
    assert e[k].isdigit(), (k, e.get(k))
print("policy:", e["MESSAGE"])
PY
kill -TERM "$seed_pid"
wait "$seed_pid" || true
seed_pid=

# journald writes asynchronously: wait until the detach entry is readable.
for _ in $(seq 50); do
        journalctl --no-pager -o json MEMD_PID="$stopped" >"$tmp/j.json" 2>/dev/null || true
        grep -q '"MEMD_EVENT":"detach"' "$tmp/j.json" && break
        sleep 0.1
done
python3 - "$tmp/j.json" "$stopped" "$tmp/free.out" <<'PY' || bad "journal entries are not what they should be"
import json, re, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
pid = sys.argv[2]
ids = {"attach": "dcd28e757efa4f5d8614f4ae8077bc4e", "detach": "551ea7676a924e009c40f19a3b0a7af8",
       "gc": "5c8ee34c04b748c5952ace6db4654341", "scvg": "97ede356ff3d483293cbf221bfc2bdf3"}
by = {}
for e in entries:
    by.setdefault(e.get("MEMD_EVENT"), []).append(e)
print({k: len(v) for k, v in by.items()})
for kind in ("attach", "gc", "scvg", "detach"):
    assert by.get(kind), "no %s entry" % kind
    for e in by[kind]:
        assert e["MESSAGE_ID"] == ids[kind], (kind, e["MESSAGE_ID"])
        assert e["MEMD_PID"] == pid and e["MEMD_COMM"] == "seed", e
        assert "MEMD_UNIT" in e, e
gc = by["gc"][-1]
assert re.match(r"^gc \d+ @[\d.]+s \d+%: .* MB goal, \d+ P \(forced\)$", gc["MESSAGE"]), gc["MESSAGE"]
for k in ("MEMD_HEAP_BEFORE_BYTES", "MEMD_HEAP_RECLAIMED_BYTES", "MEMD_HEAP_LIVE_BYTES", "MEMD_GOAL_BYTES",
          "MEMD_DURATION_NS", "MEMD_SEQ"):
    assert gc[k].isdigit(), (k, gc.get(k))
assert gc["MEMD_FORCED"] == "1"
sv = by["scvg"][-1]
lines = sv["MESSAGE"].split("\n")
assert re.match(r"^scvg-1: \d+ MB released$", lines[0]), lines
assert re.match(r"^scvg-1: inuse: \d+, idle: \d+, sys: \d+, released: \d+, consumed: \d+ \(MB\)$", lines[1]), lines
released = int(sv["MEMD_RELEASED_BYTES"])
assert released > 16 << 20, released
assert "scvg-1: %d MB released" % (released >> 20) in open(sys.argv[3]).read(), "memctl and the journal disagree"
for k in ("MEMD_HEAP_INUSE_BYTES", "MEMD_HEAP_IDLE_BYTES", "MEMD_HEAP_SYS_BYTES"):
    assert sv[k].isdigit(), (k, sv.get(k))
print("gc:", gc["MESSAGE"])
print("scvg:", sv["MESSAGE"].replace("\n", " | "))
PY

if journalctl --no-pager -x -n 50 MEMD_PID="$stopped" MEMD_EVENT=scvg 2>/dev/null | grep -q 'Heap memory returned to the OS'; then
        note "the catalog explains scvg entries (journalctl -x)"
else
        note "journalctl -x shows no catalog text (catalog not installed in this journal's database): not checked"
fi

stop_memd
finish
