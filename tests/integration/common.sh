# shellcheck shell=bash disable=SC2034
# common.sh - shared setup for the libmemd integration tests (sourced, not run).
#
# Needs MEMD_BUILD (the meson build root) and MEMD_SRC (the source root), as
# tests/integration/meson.build passes them.  Exit 77 = skipped, with the
# reason on stderr: a missing feature is never a pass.

set -euo pipefail

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }

[ -n "${MEMD_BUILD:-}" ] || skip "MEMD_BUILD is not set (run through meson test)"
[ -n "${MEMD_SRC:-}" ] || skip "MEMD_SRC is not set (run through meson test)"

LIBMEMD=$MEMD_BUILD/libmemd/libmemd.so
PROGS=$MEMD_BUILD/tests/progs
CHECK_PROFILE=$MEMD_SRC/tests/integration/check_profile.py
JEMALLOC=
for f in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/*/libjemalloc.so.2 /usr/lib/libjemalloc.so.2; do
        if [ -e "$f" ]; then JEMALLOC=$f; break; fi
done

[ -e "$LIBMEMD" ] || skip "libmemd.so not built ($LIBMEMD)"
# An ASan/TSan build of libmemd cannot be preloaded into other programs (the
# sanitizer runtime must come first in the initial library list).
if needed=$(readelf -d "$LIBMEMD" 2>/dev/null) && grep -Eq 'lib(a|t)san' <<<"$needed"; then
        skip "libmemd.so is built with ASan/TSan: it cannot be LD_PRELOADed into other programs"
fi

# Nothing from the caller's environment may change what libmemd does here.
for v in $(env | sed -n 's/^\(MEMD_[A-Za-z0-9_]*\)=.*/\1/p'); do
        case $v in MEMD_BUILD|MEMD_SRC) ;; *) unset "$v" ;; esac
done
unset LD_PRELOAD MALLOC_CONF GLIBC_TUNABLES MEMORY_PRESSURE_WATCH MEMORY_PRESSURE_WRITE 2>/dev/null || true
# These tests are about libmemd alone; the daemon has its own tests.
export MEMD_SOCKET=off

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memd-it.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

# go/pprof must not write to $HOME.
export HOME=$tmp/home GOCACHE=$tmp/gocache PPROF_TMPDIR=$tmp/pprof GOFLAGS='' GOTOOLCHAIN=local
mkdir -p "$HOME" "$GOCACHE" "$PPROF_TMPDIR"

need_prog() {
        local p
        for p in "$@"; do
                [ -x "$PROGS/$p" ] || skip "test program $PROGS/$p not built"
        done
}

# run_preloaded CMD...: CMD under libmemd.
run_preloaded() { LD_PRELOAD=$LIBMEMD "$@"; }

# Runs CMD..., sets $elapsed to its wall time in seconds; returns CMD's status.
elapsed=0
timed() {
        local t0 t1 r=0
        t0=$(date +%s.%N)
        "$@" || r=$?
        t1=$(date +%s.%N)
        elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        return $r
}
