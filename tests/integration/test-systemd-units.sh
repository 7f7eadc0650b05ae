#!/bin/bash
# test-systemd-units.sh - memd.service, memd.socket and memd.catalog as `meson install` puts them.
#
# Installs the build into a scratch DESTDIR, then: `systemd-analyze verify
# --man=no` on the installed units must print nothing and succeed (ExecStart is
# pointed at the installed memd, since verify checks that the binary exists);
# `systemd-analyze security --offline=yes` prints the service's exposure score;
# the catalog must parse (`journalctl --root=DESTDIR --update-catalog`, which
# only writes under DESTDIR) and list exactly the MESSAGE_IDs of memd/catalog.h.
. "$(dirname "$0")/common.sh"

command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
command -v meson >/dev/null || skip "meson is not on PATH (needed for meson install --destdir)"

dest=$tmp/dest
note "meson install --destdir $dest"
meson install -C "$MEMD_BUILD" --no-rebuild --quiet --destdir "$dest" >"$tmp/install.log" 2>&1 \
        || fail "meson install failed: $(cat "$tmp/install.log")"

service=$(find "$dest" -path '*/systemd/system/memd.service' | head -n1)
socket=$(find "$dest" -path '*/systemd/system/memd.socket' | head -n1)
catalog=$(find "$dest" -path '*/systemd/catalog/memd.catalog' | head -n1)
[ -n "$service" ] || fail "meson install did not install memd.service: $(cd "$dest" && find . -type f)"
[ -n "$socket" ] || fail "meson install did not install memd.socket"
[ -n "$catalog" ] || fail "meson install did not install memd.catalog"
[ "$(dirname "$service")" = "$(dirname "$socket")" ] || fail "memd.service and memd.socket in different directories"
note "installed ${service#"$dest"}, ${socket#"$dest"}, ${catalog#"$dest"}"

failed=0
bad() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }

# ExecStart names the installed memd (the @sbindir@ substitution).
exec_start=$(sed -n 's/^ExecStart=//p' "$service")
case $exec_start in
/*/memd) ;;
*) fail "ExecStart is not an absolute path to memd: '$exec_start'" ;;
esac
[ -x "$dest$exec_start" ] || bad "ExecStart=$exec_start, but $dest$exec_start is not the installed memd"
! grep -Eq '@[A-Za-z_]+@' "$service" "$socket" || bad "an unsubstituted @VAR@ is left in the units: $(grep -Eh '@[A-Za-z_]+@' "$service" "$socket")"

# A copy with ExecStart under DESTDIR, so that verify finds the binary.
units=$tmp/units
mkdir -p "$units"
sed "s|^ExecStart=$exec_start|ExecStart=$dest$exec_start|" "$service" >"$units/memd.service"
cp "$socket" "$units/memd.socket"

note "systemd-analyze verify --man=no"
r=0
systemd-analyze verify --man=no "$units/memd.service" "$units/memd.socket" >"$tmp/verify" 2>&1 || r=$?
[ "$r" -eq 0 ] || bad "systemd-analyze verify exited $r: $(cat "$tmp/verify")"
[ ! -s "$tmp/verify" ] || bad "systemd-analyze verify is not clean: $(cat "$tmp/verify")"

note "systemd-analyze security --offline=yes"
if systemd-analyze security --help 2>&1 | grep -q -- '--offline' ||
   systemd-analyze --help 2>&1 | grep -q -- '--offline'; then
        r=0
        systemd-analyze security --offline=yes --no-pager "$units/memd.service" >"$tmp/security" 2>&1 || r=$?
        score=$(sed -n 's/.*Overall exposure level for memd.service: *//p' "$tmp/security")
        [ "$r" -eq 0 ] || bad "systemd-analyze security exited $r: $(cat "$tmp/security")"
        [ -n "$score" ] || bad "no exposure score in: $(cat "$tmp/security")"
        grep '✗' "$tmp/security" || true
        note "exposure: $score"
else
        note "this systemd-analyze has no --offline: security review not run"
fi

note "memd.catalog parses and matches memd/catalog.h"
if command -v journalctl >/dev/null; then
        r=0
        journalctl --root="$dest" --update-catalog >"$tmp/catalog.log" 2>&1 || r=$?
        if [ "$r" -ne 0 ] || [ -s "$tmp/catalog.log" ]; then
                bad "journalctl --update-catalog: exit $r: $(cat "$tmp/catalog.log")"
        fi
        journalctl --root="$dest" --list-catalog --no-pager 2>&1 | awk '{ print $1 }' | sort >"$tmp/ids.db"
else
        note "no journalctl: the catalog is only compared with memd/catalog.h"
        sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$catalog" | sort >"$tmp/ids.db"
fi
sed -n 's/^#define MEMD_MESSAGE_[A-Z]*_STR .*SD_ID128_MAKE_STR(\(.*\))$/\1/p' "$MEMD_SRC/memd/catalog.h" | tr -d ',' | sort >"$tmp/ids.h"
[ "$(wc -l <"$tmp/ids.h")" -eq 5 ] || bad "memd/catalog.h: expected 5 MESSAGE_IDs, found: $(cat "$tmp/ids.h")"
diff "$tmp/ids.h" "$tmp/ids.db" >"$tmp/ids.diff" || bad "catalog IDs differ from memd/catalog.h: $(cat "$tmp/ids.diff")"
for ev in attach detach gc scvg policy; do
        grep -q "MEMD_MESSAGE_${ev^^}_STR" "$MEMD_SRC/memd/catalog.h" || bad "memd/catalog.h has no MEMD_MESSAGE_${ev^^}_STR"
done

[ "$failed" -eq 0 ] || fail "$failed check(s) failed"
note "ok"
