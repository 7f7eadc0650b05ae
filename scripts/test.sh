#!/bin/bash
# test.sh - the test command: installs dependencies, builds with -Werror, runs every suite, then the unit suites again under ASan+UBSan, then 60 s of libFuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

# Go's tools write caches under $HOME; keep them out of the user's.
export GOCACHE="${GOCACHE:-$(mktemp -d)}"

meson setup --reconfigure build-test -Dbuildtype=debugoptimized -Dwerror=true >/dev/null 2>&1 ||
        meson setup build-test -Dbuildtype=debugoptimized -Dwerror=true
ninja -C build-test
rc=0
meson test -C build-test --print-errorlogs --num-processes 2 || rc=1

# Sanitizers: the unit suites only.  The preload tests cannot run under ASan:
# ASan replaces malloc itself and must be the first DSO loaded, so libmemd
# cannot interpose beneath it (docs/testing.md).
meson setup --reconfigure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug >/dev/null 2>&1 ||
        meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
ninja -C build-asan
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        meson test -C build-asan --suite unit --print-errorlogs --num-processes 2 || rc=1

# libFuzzer over the wire-protocol reader, every body decoder and memd's
# dispatcher (tests/fuzz/, docs/testing.md): a clang build of that target
# alone, the saved crashes of tests/fuzz/crashes/ replayed, then 60 s from
# the seeds the build generates.  One test in the summary; without clang's
# libFuzzer it is a loud SKIP, never a pass.
fuzz_log=$(mktemp)
fuzz_result() {
        printf '{"name": "fuzz-memd", "result": "%s"}\n' "$1" >"$fuzz_log"
        echo "fuzz-memd: $1${2:+: $2}"
}
fuzz_probe=$(mktemp -d)
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void) d; (void) n; return 0; }' >"$fuzz_probe/probe.c"
fuzz_t0=$SECONDS
if ! command -v clang >/dev/null || ! clang -fsanitize=fuzzer "$fuzz_probe/probe.c" -o "$fuzz_probe/probe" >/dev/null 2>&1; then
        echo "SKIP fuzz-memd: no clang that links -fsanitize=fuzzer (Debian: clang, libclang-rt-14-dev)" >&2
        fuzz_result SKIP "clang with libFuzzer not found"
elif ! { meson setup --reconfigure build-fuzz -Dfuzz=true -Dtests=false >/dev/null 2>&1 ||
         CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false; } ||
     ! meson compile -C build-fuzz fuzz-memd fuzz-seeds; then
        fuzz_result FAIL "the clang build failed"
        rc=1
elif compgen -G 'tests/fuzz/crashes/*' >/dev/null &&
     ! UBSAN_OPTIONS=print_stacktrace=1 build-fuzz/tests/fuzz/fuzz-memd tests/fuzz/crashes/* \
             >build-fuzz/fuzz-replay.log 2>&1; then
        grep -v '^INFO:' build-fuzz/fuzz-replay.log | tail -n 40 || true
        fuzz_result FAIL "a saved crash input of tests/fuzz/crashes/ still crashes (above)"
        rc=1
else
        rm -rf build-fuzz/fuzz-corpus build-fuzz/fuzz-crashes
        mkdir -p build-fuzz/fuzz-corpus build-fuzz/fuzz-crashes
        cp build-fuzz/tests/fuzz/seed-* build-fuzz/fuzz-corpus/
        # -close_fd_mask=2: memd's log lines go nowhere; libFuzzer's own
        # output and the sanitizers' reports still reach fuzz.log.
        if UBSAN_OPTIONS=print_stacktrace=1 build-fuzz/tests/fuzz/fuzz-memd -max_total_time=60 -timeout=10 \
                -rss_limit_mb=2048 -close_fd_mask=2 -print_final_stats=1 \
                -artifact_prefix=build-fuzz/fuzz-crashes/ build-fuzz/fuzz-corpus >build-fuzz/fuzz.log 2>&1; then
                grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' \
                        build-fuzz/fuzz.log || true
                fuzz_result OK
        else
                grep -v '^INFO:' build-fuzz/fuzz.log | grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' |
                        tail -n 60 || true
                for f in build-fuzz/fuzz-crashes/*; do
                        if [ -e "$f" ]; then
                                echo "fuzz-memd: crash input $f (replay: build-fuzz/tests/fuzz/fuzz-memd $f)"
                        fi
                done
                fuzz_result FAIL "see build-fuzz/fuzz.log"
                rc=1
        fi
fi
rm -rf "$fuzz_probe"
echo "fuzz-memd: $((SECONDS - fuzz_t0)) s with the build"

# One plain summary line over every run, for readers and CI.
python3 - build-test/meson-logs/testlog.json build-asan/meson-logs/testlog.json "$fuzz_log" <<'PY'
import json, sys
ok = fail = skip = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif r == "SKIP":
            skip += 1
        else:
            fail += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
rm -f "$fuzz_log"
exit $rc
