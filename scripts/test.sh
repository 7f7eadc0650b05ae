#!/bin/bash
# test.sh - the test command: installs dependencies, builds with -Werror, runs every suite, then the unit suites again under ASan+UBSan.
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

# One plain summary line over both runs, for readers and CI.
python3 - build-test/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY'
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
exit $rc
