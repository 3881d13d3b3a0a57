#!/bin/sh
# The Python binding's tests (python/tests) against this build's
# libgpuqclient and gpuqd: real brokers on private sockets, as harness.c.
# Skipped (77) without python3, or when no shared library was built
# (--disable-shared) or it is sanitizer-instrumented (python would have to
# preload the sanitizer runtime).  numpy is used when installed.
py=${PYTHON3:-python3}
command -v "$py" >/dev/null 2>&1 || { echo "no python3: skip"; exit 77; }
top=${abs_top_builddir:-.}
so=$(ls "$top"/libclient/.libs/libgpuqclient.so.*.*.* 2>/dev/null | head -1)
[ -n "$so" ] || { echo "no shared libgpuqclient built: skip"; exit 77; }
if command -v ldd >/dev/null 2>&1 && ldd "$so" 2>/dev/null | grep -q 'lib[at]san'; then
	echo "libgpuqclient is built with a sanitizer: skip"; exit 77
fi
src=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$src/python/gpuq/__init__.py" ] || { echo "no $src/python/gpuq"; exit 99; }
GPUQ_LIBRARY=$so
GPUQD=${GPUQD:-$top/broker/gpuqd}
PYTHONPATH="$src/python${PYTHONPATH:+:$PYTHONPATH}"
PYTHONDONTWRITEBYTECODE=1  # the source tree is read-only under distcheck
export GPUQ_LIBRARY GPUQD PYTHONPATH PYTHONDONTWRITEBYTECODE
"$py" -c 'import numpy' 2>/dev/null && echo "numpy: yes" || echo "numpy: no"
exec "$py" -m unittest discover -s "$src/python/tests" -v
