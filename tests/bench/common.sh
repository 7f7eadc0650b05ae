# shellcheck shell=bash disable=SC2034
# common.sh - what the benchmark runners share (sourced): the libmemd and jemalloc to preload, a scratch directory.
#
# bench_setup NAME PROGRAM: checks that PROGRAM and libmemd.so are built under
# $build, sets $libmemd, $jemalloc ($JEMALLOC or Debian's libjemalloc2, maybe
# empty) and $tmp (removed at exit).
bench_setup() {
        local name=$1 prog=$2 f
        libmemd=$(realpath -e "$build/libmemd/libmemd.so" 2>/dev/null) || libmemd=
        if [ ! -x "$prog" ] || [ -z "$libmemd" ]; then
                echo "$name: $prog or $build/libmemd/libmemd.so missing; build first (ninja -C $build) or set MEMD_BUILD" >&2
                exit 2
        fi
        jemalloc=${JEMALLOC:-}
        if [ -z "$jemalloc" ]; then
                for f in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/*/libjemalloc.so.2 /usr/lib/libjemalloc.so.2 /usr/local/lib/libjemalloc.so.2; do
                        if [ -e "$f" ]; then jemalloc=$f; break; fi
                done
        fi
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
}

# proc_cpu_ticks PID: utime + stime of PID in clock ticks (/proc/PID/stat);
# fails if PID is gone.
proc_cpu_ticks() {
        local stat rest f
        read -r stat <"/proc/$1/stat" || return 1
        rest=${stat##*) }       # fields from 3 (state) on: comm may hold blanks
        read -r -a f <<<"$rest"
        echo $((f[11] + f[12]))
}

# wait_agents PID N OUT ERR: waits (120 s at most) until agents-bench PID
# printed "ready" to OUT and the caller's `rows` (attached processes) reaches
# N; else the caller's `die`, with OUT and ERR.
wait_agents() {
        local pid=$1 want=$2 out=$3 err=$4 n=0
        for _ in $(seq 600); do
                kill -0 "$pid" 2>/dev/null || die "agents-bench exited: $(cat "$err")"
                if grep -q '^ready ' "$out"; then
                        n=$(rows)
                        [ "$n" -ge "$want" ] && return 0
                fi
                sleep 0.2
        done
        die "memctl status shows $n of $want agents after 120 s: $(cat "$out" "$err")"
}
