#!/bin/bash
# test-preload-tools.sh - ordinary programs run unchanged under LD_PRELOAD=libmemd.so.
#
# Each command runs once without the library (the reference) and then under
# it with the default settings, with MEMD_PROFILE_RATE=1 (every allocation
# sampled, the slow path everywhere), with MEMD_DEBUG=gctrace=1, and with the
# default daemon socket pointing nowhere: stdout, stderr and the exit status
# must be identical.
. "$(dirname "$0")/common.sh"
need_prog cxx

command -v python3 >/dev/null || skip "python3 not installed"
# The interpreter itself, not a wrapper script (pyenv's shims start several
# processes, each of which would be a separate run under the library).
PY=$(python3 -c 'import sys; print(sys.executable)')

# A file to sort: 200k pseudo-random lines.
awk 'BEGIN { x = 12345; for (i = 0; i < 200000; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d line %x\n", x % 100000, x } }' >"$tmp/unsorted"

cmds=(
        "'$PY' -c 'import json; print(sum(range(10**6)))'"
        "'$PY' -c 'import json, collections; d = {str(i): list(range(i % 50)) for i in range(20000)}; print(len(json.dumps(d)), collections.Counter(len(v) for v in d.values()).most_common(2))'"
        "sort '$tmp/unsorted' | md5sum"
        "sort -n -k1,1 -S 8M '$tmp/unsorted' | tail -3"
        "ls -R /usr/include >/dev/null; echo ls=\$?"
        "sh -c 'seq 1 100000 | sort -r | head -5 | tr 0-9 a-j; echo done'"
        "'$PROGS/cxx' 20"
)
if command -v git >/dev/null; then
        cmds+=("git --version")
else
        echo "note: git not installed, git --version not run" >&2
fi

variants=(
        "default:"
        "rate0:MEMD_PROFILE_RATE=0"
        "rate1:MEMD_PROFILE_RATE=1"
        "gctrace:MEMD_DEBUG=gctrace=1"
        "socket-absent:MEMD_SOCKET=$tmp/no-such-dir/memd.sock"
        "rate-small-limit:MEMD_PROFILE_RATE=4K MEMD_MEMORY_LIMIT=1G"
)

failed=0
i=0
for c in "${cmds[@]}"; do
        i=$((i + 1))
        ref_rc=0
        bash -c "$c" >"$tmp/ref.$i.out" 2>"$tmp/ref.$i.err" || ref_rc=$?
        for v in "${variants[@]}"; do
                name=${v%%:*}
                envs=${v#*:}
                rc=0
                # shellcheck disable=SC2086
                env LD_PRELOAD="$LIBMEMD" $envs bash -c "$c" >"$tmp/got.out" 2>"$tmp/got.err" || rc=$?
                if [ "$rc" != "$ref_rc" ] || ! cmp -s "$tmp/ref.$i.out" "$tmp/got.out" || ! cmp -s "$tmp/ref.$i.err" "$tmp/got.err"; then
                        echo "FAIL [$name] $c: exit $rc (want $ref_rc), or output differs:" >&2
                        diff -u "$tmp/ref.$i.out" "$tmp/got.out" | head -10 >&2 || true
                        diff -u "$tmp/ref.$i.err" "$tmp/got.err" | head -10 >&2 || true
                        failed=$((failed + 1))
                else
                        echo "ok   [$name] $c"
                fi
        done
done

# The library must really have been loaded in those processes: check one.
out=$(LD_PRELOAD="$LIBMEMD" bash -c 'grep -c libmemd /proc/self/maps' || true)
[ "${out:-0}" -gt 0 ] || fail "libmemd.so does not show in /proc/self/maps of a preloaded process"

# A profile written at exit from a foreign binary (python3) must load in pprof.
if command -v go >/dev/null; then
        MEMD_MEMPROFILE="$tmp/py.%p.pb.gz" MEMD_PROFILE_RATE=64K LD_PRELOAD="$LIBMEMD" \
                "$PY" -c 'x = [str(i) * 10 for i in range(200000)]; print(len(x))' >/dev/null
        set -- "$tmp"/py.*.pb.gz
        [ -e "$1" ] || fail "MEMD_MEMPROFILE=$tmp/py.%p.pb.gz wrote nothing"
        [ $# -eq 1 ] || fail "one python3 process wrote $# profiles"
        go tool pprof -top -nodecount=5 -sample_index=alloc_space "$1" >"$tmp/py.top" 2>"$tmp/py.err" ||
                fail "go tool pprof cannot read python3's profile: $(head -3 "$tmp/py.err")"
        echo "ok   python3 profile read by pprof:"; head -12 "$tmp/py.top" | sed 's/^/     | /'
else
        echo "note: go not installed, python3 profile not read" >&2
fi

[ "$failed" -eq 0 ] || fail "$failed command/variant pair(s) differ under libmemd"
echo "PASS: ${#cmds[@]} commands x ${#variants[@]} variants identical under libmemd"
