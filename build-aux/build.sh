#!/bin/sh
# Configure and build gpuq in a build directory (default: ./build).
#   build-aux/build.sh [BUILD_DIR] [configure args...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$top/build"}
[ $# -gt 0 ] && shift
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p "$dir"
cd "$dir"
[ -f Makefile ] || "$top/configure" --enable-silent-rules "$@" >configure.out 2>&1 ||
	{ tail -30 configure.out; exit 1; }
make -j"$(nproc)" >make.out 2>&1 || { tail -40 make.out; exit 1; }
