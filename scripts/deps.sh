#!/bin/bash
# deps.sh - installs the Debian 12 packages memd builds, tests and demos with (only those missing).
set -euo pipefail

packages=(
        build-essential g++ meson ninja-build pkg-config git python3
        libev-dev libmsgpack-dev libsystemd-dev check libinih-dev
        libunwind-dev libdw-dev zlib1g-dev libprotobuf-c-dev
        golang-go binutils libjemalloc2 libjemalloc-dev
        systemd debootstrap systemd-container
        clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0

if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
else
        SUDO=
fi
echo "deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
