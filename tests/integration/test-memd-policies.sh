#!/bin/bash
# test-memd-policies.sh - memd's memory policies end to end, no memctl call needed: MemoryLimit, idle memory returned, a steady workload left alone, pressure; bad files, SIGHUP, memctl set.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/daemon.sh"
need_prog seed churn

cfg=$tmp/cfg
mkdir -p "$cfg/policy.d"
# seed-limit: the cache over a limit; seed-idle: a cache emptied by the
# program; churn: a steady workload (IdleTimeout short so that a wrong
# scavenge would show within the run); no-pressure: ReclaimOnPressure=no.
cat >"$cfg/memd.conf" <<'EOF'
[Policy]
IdleTimeout=3s   # short for the test; the built-in default is 30s
EOF
cat >"$cfg/policy.d/10-limit.policy" <<'EOF'
[Match]
Comm=seed-limit

[Policy]
MemoryLimit=64M
EOF
cat >"$cfg/policy.d/20-churn.policy" <<'EOF'
[Match]
Comm=churn
[Policy]
IdleMemoryMax=8M
IdleTimeout=2s
ReclaimOnPressure=no
EOF
printf '[Policy]\nMemoryLimit=12Q\n' >"$cfg/policy.d/30-bad.policy"
mkfifo "$tmp/pressure"

MEMD_PRESSURE_WATCH=$tmp/pressure "$MEMD" --socket "$sock" --log-target stderr --config-dir "$cfg" \
        2>"$tmp/memd.log" &
memd_pid=$!
wait_socket memd
export MEMD_SOCKET=$sock

note "without MEMD_PRESSURE_WATCH memd arms a PSI trigger on /proc/pressure/memory"
if [ -e /proc/pressure/memory ]; then
        "$MEMD" --socket "$tmp/psi.sock" --log-target stderr --config-dir "$cfg" 2>"$tmp/psi.log" &
        psi_pid=$!
        for _ in $(seq 50); do grep -q "memory pressure:" "$tmp/psi.log" && break; sleep 0.1; done
        kill -TERM "$psi_pid"
        wait "$psi_pid" || true
        grep -q 'memory pressure: watching /proc/pressure/memory for "some 100000 2000000"' "$tmp/psi.log" ||
                bad "memd did not arm its PSI trigger: $(grep 'memory pressure' "$tmp/psi.log")"
        # Real pressure: this host records no memory stall from a cgroup hog
        # (its PSI total stays at a few ms), so the reaction is exercised
        # through the FIFO below and the memd-policy unit suite.
        note "SKIP part: real memory pressure is not produced here; the trigger path is checked, the reaction uses the FIFO"
else
        note "SKIP part: no /proc/pressure/memory (kernel without PSI)"
fi

note "a bad policy file is reported as FILE:LINE and skipped; memd runs, the others load"
grep -q "30-bad.policy:2: .*MemoryLimit" "$tmp/memd.log" || bad "no FILE:LINE error for the bad file: $(cat "$tmp/memd.log")"
grep -q "configuration: 3 files from $cfg" "$tmp/memd.log" || bad "memd.conf and two policy files should load: $(grep configuration "$tmp/memd.log")"
grep -q "watching $tmp/pressure (a FIFO, device or socket)" "$tmp/memd.log" || bad "memd does not watch MEMD_PRESSURE_WATCH: $(cat "$tmp/memd.log")"

# rss_kib PID
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# start_seed NAME ARGS...: seed copied as NAME (its comm), waiting; sets $spid.
start_seed() {
        local name=$1
        shift
        cp "$PROGS/seed" "$tmp/$name"
        LD_PRELOAD=$LIBMEMD "$tmp/$name" "$@" -w >"$tmp/$name.out" 2>&1 &
        spid=$!
        for _ in $(seq 300); do grep -q '^waiting' "$tmp/$name.out" && return 0; sleep 0.05; done
        fail "$name did not get to waiting: $(cat "$tmp/$name.out")"
}

note "MemoryLimit=64M: a 220 MiB cache's reclaimer runs and RSS falls under the limit, no memctl call"
start_seed seed-limit -t 2 -n 200000 -m reclaimer
limit_pid=$spid
t0=$EPOCHREALTIME
for _ in $(seq 100); do [ "$(rss_kib "$limit_pid")" -lt 65536 ] && break; sleep 0.1; done
t1=$EPOCHREALTIME
rss=$(rss_kib "$limit_pid")
[ "$rss" -lt 65536 ] || bad "seed-limit's RSS is still $rss KiB 10 s after its fill (limit 64 MiB)"
note "seed-limit: RSS $rss KiB, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after the fill ended"
grep -q "pid $limit_pid (seed-limit): policy limit: MemoryLimit: heap held from the OS .* over the limit 64.0 MiB" "$tmp/memd.log" ||
        bad "no policy limit entry for seed-limit: $(grep "$limit_pid" "$tmp/memd.log")"
ctl status "$limit_pid" >"$tmp/limit.status" || bad "status of seed-limit failed"
grep -Eq "MemoryLimit=64.0 MiB +from $cfg/policy.d/10-limit.policy:5" "$tmp/limit.status" ||
        bad "status does not show the limit and its source: $(sed -n '/^Policy/,/^Recent/p' "$tmp/limit.status")"

note "idle memory: a 220 MiB cache emptied by the program goes back within IdleTimeout (3 s) + one stats interval"
start_seed seed-idle -t 2 -n 200000 -k
idle_pid=$spid
t0=$EPOCHREALTIME
for _ in $(seq 150); do [ "$(rss_kib "$idle_pid")" -lt 49152 ] && break; sleep 0.1; done
t1=$EPOCHREALTIME
rss=$(rss_kib "$idle_pid")
took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
note "seed-idle: RSS $rss KiB after $took s"
[ "$rss" -lt 49152 ] || bad "seed-idle's RSS is $rss KiB 15 s after the cache was emptied"
# IdleTimeout 3 s, stats every 1 s, the memd's 2 s idle timer start after
# the first stats above IdleMemoryMax: 5 s, and 1 s of slack for a busy CI.
awk -v t="$took" 'BEGIN { exit !(t <= 6.0) }' || bad "seed-idle's idle memory took $took s to go back (IdleTimeout 3 s + one interval)"
grep -q "pid $idle_pid (seed-idle): policy idle: IdleMemoryMax: idle heap" "$tmp/memd.log" ||
        bad "no policy idle entry for seed-idle"
# A scavenge alone: no gc line for it (the program's caches stay).
grep -q "pid $idle_pid (seed-idle): gc " "$tmp/memd.log" && bad "the idle policy ran a GC in seed-idle"

note "a steady workload (64 MiB allocated and freed twice a second, 12 s) is not scavenged over and over"
LD_PRELOAD=$LIBMEMD "$PROGS/churn" -m 64 -p 500 -d 12 >"$tmp/churn.out" 2>&1 &
churn_pid=$!
for _ in $(seq 100); do grep -q '^waiting' "$tmp/churn.out" && break; sleep 0.05; done

note "pressure: an event on MEMD_PRESSURE_WATCH makes memd ask ReclaimOnPressure processes, largest first"
sleep 2 # churn's policy resolved, its stats in
echo pressure >"$tmp/pressure"
for _ in $(seq 50); do grep -q "policy pressure" "$tmp/memd.log" && break; sleep 0.1; done
grep -q "pid $idle_pid (seed-idle): policy pressure: ReclaimOnPressure: memory pressure ($tmp/pressure)" "$tmp/memd.log" ||
        bad "memd did not ask seed-idle to reclaim under pressure: $(grep -i pressure "$tmp/memd.log")"
grep -q "pid $churn_pid (churn): policy pressure" "$tmp/memd.log" && bad "memd asked churn (ReclaimOnPressure=no) under pressure"

wait "$churn_pid" || bad "churn failed: $(cat "$tmp/churn.out")"
n=$(grep -c "pid $churn_pid (churn): scvg[0-9]" "$tmp/memd.log" || true)
note "churn: $n automatic scavenges in 12 s (IdleTimeout 2 s, IdleMemoryMax 8M)"
[ "$n" -le 1 ] || bad "churn was scavenged $n times: $(grep "pid $churn_pid (churn): policy" "$tmp/memd.log" | head -3)"

note "memctl set: a runtime value, its source, all or nothing; bad values are usage errors"
ctl set "$idle_pid" memory-limit=100M IdleTimeout=1min >"$tmp/set.out" 2>&1 || bad "memctl set failed: $(cat "$tmp/set.out")"
ctl status "$idle_pid" >"$tmp/idle.status"
grep -Eq "MemoryLimit=100.0 MiB +from memctl set" "$tmp/idle.status" || bad "set memory-limit not shown: $(sed -n '/^Policy/,/^Recent/p' "$tmp/idle.status")"
grep -Eq "IdleTimeout=60s +from memctl set" "$tmp/idle.status" || bad "set IdleTimeout not shown"
# GCPercent is the agent's to pace (GOGC): memd sends it, NextGC becomes its goal.
ctl set "$idle_pid" gc-percent=50 >/dev/null || bad "memctl set gc-percent failed"
for _ in $(seq 30); do
        ng=$(ctl --json status "$idle_pid" | grep -o '"NextGC": [0-9]*' | grep -o '[0-9]*$')
        [ "${ng:-0}" -gt 0 ] && break
        sleep 0.1
done
[ "${ng:-0}" -gt 0 ] || bad "after memctl set gc-percent=50 NextGC is still ${ng:-none}"
r=0; ctl set "$idle_pid" idle-timeout=5s memory-limit=lots 2>"$tmp/err" || r=$?
[ "$r" -eq 2 ] && grep -q "MemoryLimit" "$tmp/err" || bad "a bad value: exit $r, $(cat "$tmp/err")"
ctl status "$idle_pid" | grep -Eq "IdleTimeout=60s +from memctl set" || bad "a rejected memctl set changed IdleTimeout"
r=0; ctl set "$idle_pid" nonsense 2>"$tmp/err" || r=$?
[ "$r" -eq 2 ] || bad "KEY without =: exit $r"
r=0; ctl set 1 memory-limit=1G 2>"$tmp/err" || r=$?
[ "$r" -eq 1 ] && grep -q "not attached" "$tmp/err" || bad "set on an unattached pid: exit $r, $(cat "$tmp/err")"

note "SIGHUP reloads: a changed file applies to running processes; memctl set's values stay"
sed -i 's/MemoryLimit=64M/MemoryLimit=48M/' "$cfg/policy.d/10-limit.policy"
rm "$cfg/policy.d/30-bad.policy"
kill -HUP "$memd_pid"
for _ in $(seq 50); do [ "$(grep -c 'configuration: 3 files' "$tmp/memd.log")" -ge 2 ] && break; sleep 0.1; done
ctl status "$limit_pid" | grep -Eq "MemoryLimit=48.0 MiB +from $cfg/policy.d/10-limit.policy:5" ||
        bad "after SIGHUP seed-limit's limit is not 48M: $(ctl status "$limit_pid" | sed -n '/^Policy/,/^Recent/p')"
ctl status "$idle_pid" | grep -Eq "MemoryLimit=100.0 MiB +from memctl set" || bad "SIGHUP lost memctl set's value"
kill -0 "$memd_pid" || bad "memd died"

if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && command -v useradd >/dev/null; then
        note "another user's process: memctl set is refused"
        user=memd-test
        id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
        r=0
        setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups \
                "$MEMCTL" --socket "$sock" set "$idle_pid" memory-limit=1M >"$tmp/perm.out" 2>&1 || r=$?
        [ "$r" -eq 1 ] && grep -q "permission denied" "$tmp/perm.out" || bad "memd-test set root's process: exit $r, $(cat "$tmp/perm.out")"
else
        note "SKIP part: not root or no setpriv/useradd: the other-user check did not run"
fi

kill -TERM "$limit_pid" "$idle_pid"
wait "$limit_pid" "$idle_pid" || true
grep -q 'reclaimer_calls=[1-9]' "$tmp/seed-limit.out" || bad "seed-limit's reclaimer never ran: $(cat "$tmp/seed-limit.out")"
stop_memd
finish
