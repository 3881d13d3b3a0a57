#!/bin/sh
# Install what gpuq needs to build and test on Debian 12, if missing.
# Used by the README's commands and by .ci/run.  The CUDA toolkit is not a
# Debian package here: configure finds nvcc if it is installed, and builds
# the CPU-only tree if not.
set -eu
pkgs="build-essential autoconf automake libtool pkg-config liburing-dev
libhiredis-dev check redis-server python3 clang libclang-rt-14-dev"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "setup: installing$missing"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
