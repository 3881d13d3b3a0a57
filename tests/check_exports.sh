#!/bin/sh
# libgpuqclient must export the public gpuq_* API and nothing else, with the
# GPUQ_0.1 symbol version.  Skipped (77) in static-only builds.
so=$(ls "${abs_top_builddir:-.}"/libclient/.libs/libgpuqclient.so.*.*.* 2>/dev/null | head -1)
[ -n "$so" ] || { echo "no shared library built: skip"; exit 77; }
syms=$(nm -D --defined-only "$so" | awk '$3 != "" {print $3}')
bad=$(printf '%s\n' "$syms" | grep -v '^gpuq_[a-z0-9_]*@@GPUQ_0\.1$' | grep -v '^GPUQ_0\.1$')
if [ -n "$bad" ]; then
	echo "unexpected exports:"; printf '%s\n' "$bad"; exit 1
fi
for f in gpuq_connect gpuq_open gpuq_enqueue gpuq_enqueue_batch gpuq_reserve \
	gpuq_commit gpuq_poll gpuq_result gpuq_wait gpuq_stats_get gpuq_strerror \
	gpuq_err_name gpuq_close gpuq_disconnect; do
	printf '%s\n' "$syms" | grep -q "^$f@@GPUQ_0\.1$" || { echo "missing export $f"; exit 1; }
done
echo "exports ok: $(printf '%s\n' "$syms" | grep -c '^gpuq_')"
