#!/bin/bash
# test-nspawn.sh - `systemctl start memd` for real: the installed build in a Debian 12 container booted with systemd as PID 1 (systemd-nspawn).
#
# A bookworm minbase root (debootstrap, from the mirror the host's apt uses)
# with systemd and the libraries the built binaries need is cached as a tar
# under /var/cache/memd-tests (MEMD_NSPAWN_CACHE), keyed by what went into it;
# each run unpacks a fresh copy, so no run changes the cache.  The copy gets
# `meson install --destdir`, ldconfig, the test programs and a oneshot unit,
# memd-nspawn-test.service, which runs nspawn-check.sh after boot: memd.socket,
# a client under LD_PRELOAD=libmemd.so on the default socket, memctl
# status / free-os-memory, the journal's gc/scvg/attach entries, the catalog,
# socket activation.  The unit writes its results into a directory bound from
# the host and powers the container off; this script prints them and fails,
# with the container's console and journal, on any failed check.
#
# Skips (77) when nspawn is impossible: not root, no systemd-nspawn or
# debootstrap, no network for debootstrap, a host where nspawn cannot start
# a container at all.

# Read before common.sh, which clears MEMD_* from the environment.
cache_dir=${MEMD_NSPAWN_CACHE:-/var/cache/memd-tests}
mirror=${MEMD_NSPAWN_MIRROR:-}

. "$(dirname "$0")/common.sh"

# The run's copy of the root lives in $tmp; a cache build's scratch beside the
# cache.  meson's timeout sends SIGTERM, and bash runs the EXIT trap on a
# signal only when that signal is trapped.
scratch=
cleanup() {
        [ -z "$scratch" ] || rm -rf --one-file-system "$scratch"
        rm -rf --one-file-system "$tmp"
}
trap 'exit 143' TERM INT HUP

[ "$(id -u)" -eq 0 ] || skip "not root: debootstrap and systemd-nspawn need root"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not installed (Debian: package systemd-container)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (Debian: package debootstrap)"
command -v meson >/dev/null || skip "meson is not on PATH (needed for meson install --destdir)"
command -v flock >/dev/null || skip "flock is not installed (util-linux)"
need_prog seed fake-agent
[ -x "$MEMD_BUILD/memd/memd" ] || skip "memd not built"
[ -x "$MEMD_BUILD/ctl/memctl" ] || skip "memctl not built"

suite=bookworm
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

# --- what goes into the root -------------------------------------------------------
# systemd as init; the libraries of the built binaries, found by ldd and
# mapped to their Debian packages, so that a new dependency rebuilds the
# cache by itself (a library from no package fails here).  No dbus: systemctl
# run as root talks to systemd over its private socket.
packages=(systemd systemd-sysv libev4 libmsgpackc2 libsystemd0 libunwind8 zlib1g)
if command -v dpkg >/dev/null; then
        mapfile -t libs < <(for bin in "$MEMD_BUILD/memd/memd" "$MEMD_BUILD/ctl/memctl" "$LIBMEMD" "$PROGS/seed" "$PROGS/fake-agent"; do
                ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
        done | grep -v "^$MEMD_BUILD/" | sort -u)
        # One dpkg -S for all (it takes half a second a call); with merged /usr a
        # library may be recorded under /lib or /usr/lib.
        declare -A owner=()
        while IFS= read -r line; do
                case $line in diversion*) continue ;; esac
                owner[${line##*: }]=${line%%[:,]*}
        done < <(for lib in "${libs[@]}"; do printf '%s\n' "$lib" "/usr$lib" "${lib#/usr}"; done | sort -u |
                xargs dpkg -S 2>/dev/null || true)
        for lib in "${libs[@]}"; do
                pkg=${owner[$lib]:-${owner[/usr$lib]:-${owner[${lib#/usr}]:-}}}
                [ -n "$pkg" ] || fail "$lib (needed by the build) is in no Debian package: the container cannot have it"
                packages+=("$pkg")
        done
fi
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)

# The mirror the host's apt uses for the suite's main component.
if [ -z "$mirror" ] && command -v apt-get >/dev/null; then
        # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
        mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
                awk -v s="$suite" '$2 == s && $3 == "main" { print $1; exit }')
fi
mirror=${mirror:-http://deb.debian.org/debian/}
# And its proxy, which debootstrap only takes from the environment.
if [ -z "${http_proxy:-}" ] && command -v apt-config >/dev/null; then
        eval "$(apt-config shell http_proxy Acquire::http::Proxy)"
        [ -z "${http_proxy:-}" ] || export http_proxy
fi

# Bump recipe when the way the root is made changes without the list changing.
recipe="recipe=1 suite=$suite arch=$arch variant=minbase mirror=$mirror packages=${packages[*]}"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
cache=$cache_dir/nspawn-$suite-$key.tar
note "container root: Debian $suite minbase with ${packages[*]} (cache key $key)"

# --- the cached root -----------------------------------------------------------------
# Built under a lock (two runs at once build it once) into a scratch directory,
# packed to a temporary name and renamed: a run only ever trusts a complete tar,
# and an interrupted build leaves only scratch that the next build removes.
build_cache() {
        local r=0
        # What an interrupted build left (we hold the lock: nobody is building).
        rm -rf --one-file-system "$cache_dir"/.build-* "$cache_dir"/.nspawn-*.tar.*
        scratch=$cache_dir/.build-$key.$$
        note "no cached root: debootstrap from $mirror"
        timed debootstrap --variant=minbase --arch="$arch" --include="$(IFS=,; echo "${packages[*]}")" \
                "$suite" "$scratch" "$mirror" >"$tmp/debootstrap.log" 2>&1 || r=$?
        if [ "$r" -ne 0 ]; then
                if grep -Eqi 'Failed getting release file|Couldn.t download|Temporary failure resolving|Could not resolve|Connection (refused|timed out)|Network is unreachable|No route to host|Failure while downloading' "$tmp/debootstrap.log"; then
                        skip "debootstrap could not download from $mirror (no network?): $(tail -n 3 "$tmp/debootstrap.log" | tr '\n' ' ')"
                fi
                fail "debootstrap failed ($r): $(tail -n 20 "$tmp/debootstrap.log")"
        fi
        note "debootstrap took ${elapsed}s"
        rm -f "$scratch"/var/cache/apt/archives/*.deb
        printf '%s\n' "$recipe" >"$scratch/.memd-nspawn-recipe"
        tar --numeric-owner --xattrs --xattrs-include='*' -C "$scratch" -cf "$cache_dir/.nspawn-$suite-$key.tar.$$" . ||
                fail "could not pack the root into $cache_dir"
        mv -f "$cache_dir/.nspawn-$suite-$key.tar.$$" "$cache"
        rm -rf --one-file-system "$scratch"
        scratch=
        # Roots made for other package lists are dead weight now.
        find "$cache_dir" -maxdepth 1 -name "nspawn-$suite-*.tar" ! -name "${cache##*/}" -delete
}

mkdir -p "$cache_dir"
if [ -e "$cache" ]; then
        note "cached root $cache"
else
        exec 9>"$cache_dir/.lock"
        flock -w 900 9 || fail "could not lock $cache_dir/.lock within 15 min"
        if [ -e "$cache" ]; then note "cached root $cache (made by another run meanwhile)"; else build_cache; fi
        exec 9>&-
fi

# --- this run's root -----------------------------------------------------------------
root=$tmp/root
out=$tmp/out
mkdir -p "$root" "$out"
timed tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -xf "$cache" || fail "could not unpack $cache"
note "unpacked a fresh root in ${elapsed}s"

meson install -C "$MEMD_BUILD" --no-rebuild --quiet --destdir "$root" >"$tmp/install.log" 2>&1 ||
        fail "meson install failed: $(cat "$tmp/install.log")"
libmemd=$(cd "$root" && find . -name libmemd.so -path '*/lib*' | head -n1)
[ -n "$libmemd" ] || fail "meson install put no libmemd.so in the root"
libmemd=${libmemd#.}
memd_bin=$(cd "$root" && find . -type f -name memd -path '*/sbin/*' | head -n1)
memd_bin=${memd_bin#.}
[ -n "$memd_bin" ] || fail "meson install put no memd in an sbin directory"
memctl_bin=$(cd "$root" && find . -type f -name memctl -path '*/bin/*' | head -n1)
memctl_bin=${memctl_bin#.}
[ -n "$memctl_bin" ] || fail "meson install put no memctl in a bin directory"
# The check script calls memctl by name, as a user would.
[ "$memctl_bin" = /usr/local/bin/memctl ] || [ "$memctl_bin" = /usr/bin/memctl ] || ln -sf "$memctl_bin" "$root/usr/local/bin/memctl"

progs=/usr/local/libexec/memd-tests
install -D -m 0755 "$PROGS/seed" "$root$progs/seed"
install -D -m 0755 "$PROGS/fake-agent" "$root$progs/fake-agent"
install -D -m 0755 "$MEMD_SRC/tests/integration/nspawn-check.sh" "$root$progs/nspawn-check.sh"

# The container's own ldconfig, over its own ld.so.conf (Debian's lists
# /usr/local/lib and /usr/local/lib/<triplet>): the installed libmemd.so is
# then found like any library.  Then every binary must resolve in there.
chroot "$root" /sbin/ldconfig || fail "ldconfig in the root failed"
for b in "$memd_bin" "$memctl_bin" "$libmemd" "$progs/seed" "$progs/fake-agent"; do
        chroot "$root" /usr/bin/ldd "$b" >"$tmp/ldd" 2>&1 || fail "ldd $b in the root failed: $(cat "$tmp/ldd")"
        ! grep -q 'not found' "$tmp/ldd" || fail "$b misses libraries in the root: $(grep 'not found' "$tmp/ldd")"
done

cat >"$root/etc/systemd/system/memd-nspawn-test.service" <<EOF
[Unit]
Description=memd nspawn integration checks
After=basic.target
# Power off whatever happens, so the host never waits for its timeout.
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
Environment=TEST_OUT=/memd-test-out TEST_LIBMEMD=$libmemd TEST_PROGS=$progs
ExecStart=$progs/nspawn-check.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=120

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/memd-nspawn-test.service "$root/etc/systemd/system/multi-user.target.wants/"

# --- boot -----------------------------------------------------------------------------
# Can nspawn start a container here at all?  If not, this host cannot run the test.
r=0
timeout -k 5 60 systemd-nspawn --quiet --register=no --keep-unit -D "$root" /bin/true </dev/null >"$tmp/probe.log" 2>&1 || r=$?
[ "$r" -eq 0 ] || skip "systemd-nspawn cannot start a container on this host ($r): $(tr '\n' ' ' <"$tmp/probe.log")"

note "booting the container (systemd-nspawn --boot)"
r=0
timed timeout -k 10 180 systemd-nspawn --boot --register=no --keep-unit --console=pipe -D "$root" \
        --bind="$out:/memd-test-out" </dev/null >"$tmp/console.log" 2>&1 || r=$?
note "boot, checks and poweroff took ${elapsed}s (systemd-nspawn exit $r)"

show_container() {
        echo "--- container console" >&2
        cat "$tmp/console.log" >&2
        if [ -s "$out/journal.txt" ]; then
                echo "--- container journal (last 150 lines)" >&2
                tail -n 150 "$out/journal.txt" >&2
        fi
        for f in seed.out seed.err fake-agent.out free-os-memory.txt status-pid.txt; do
                [ -s "$out/$f" ] || continue
                echo "--- $f" >&2
                cat "$out/$f" >&2
        done
}

[ -e "$out/results" ] || { show_container; fail "the container wrote no results (systemd-nspawn exit $r)"; }
sed -n 's/^\(PASS\|FAIL\) /\1: /p' "$out/results"
npass=$(grep -c '^PASS ' "$out/results" || true)
nfail=$(grep -c '^FAIL ' "$out/results" || true)
if ! grep -qx DONE "$out/results"; then
        show_container
        fail "the checks did not finish in the container (systemd-nspawn exit $r)"
fi
[ "$r" -eq 0 ] || { show_container; fail "systemd-nspawn exited $r"; }
if [ "$nfail" -ne 0 ]; then
        show_container
        fail "$nfail of $((npass + nfail)) check(s) failed in the container"
fi
[ "$npass" -gt 0 ] || { show_container; fail "no check ran in the container"; }
note "ok: $npass checks"
