#!/bin/sh
# Run every test suite: set up, build (CUDA backend too when nvcc is
# installed), make check.  GPU suites skip (exit 77) without a GPU.
#   build-aux/run-tests.sh [BUILD_DIR] [configure args...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$top/build"}
[ $# -gt 0 ] && shift
"$top/build-aux/setup-debian.sh"
"$top/build-aux/build.sh" "$dir" "$@"
cd "$dir"
if ! make -j"$(nproc)" check; then
	for f in $(find . -name '*.log' -path '*tests*'); do
		grep -q '^FAIL\|^ERROR' "${f%.log}.trs" 2>/dev/null && { echo "== $f"; tail -50 "$f"; }
	done
	exit 1
fi
