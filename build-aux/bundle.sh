#!/bin/sh
# Build a relocatable bundle for a GPU host that has the NVIDIA driver but no
# build tools or Debian packages: gpuqd (CUDA + CPU backends), gpuqctl,
# gpuq-bench, gpuq-demo, every test binary and a runner.  liburing, hiredis
# and check are linked statically, the CUDA runtime too (cudart_static), so
# the binaries need only libc, libstdc++ and the driver's libcuda.
#   build-aux/bundle.sh [OUT_DIR]      (default: ./bundle)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$top/bundle"}
build="$top/build-bundle"
"$top/build-aux/setup-debian.sh"
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
	{ echo "bundle: nvcc not found; the bundle is for GPU hosts" >&2; exit 1; }
libdir=/usr/lib/$(gcc -print-multiarch)
# A directory holding only the static archives, searched first: the linker
# takes the first directory that has libfoo.so or libfoo.a, so these win
# over the shared libraries without libtool having to pass .a paths.
static="$build/static-libs"
mkdir -p "$static"
for l in uring hiredis check subunit; do
	ln -sf "$libdir/lib$l.a" "$static/"
done
"$top/build-aux/build.sh" "$build" --with-cuda --disable-shared \
	URING_LIBS="-L$static -luring" \
	HIREDIS_LIBS="-L$static -lhiredis" \
	CHECK_LIBS="-L$static -lcheck -lsubunit -lm -lrt"
(cd "$build" && make -j"$(nproc)" check TESTS= >/dev/null)
rm -rf "$out"
mkdir -p "$out/bin" "$out/tests"
for p in broker/gpuqd broker/gpuqctl bench/gpuq-bench bench/gpuq-demo; do
	cp "$build/$p" "$out/bin/"
done
for t in "$build"/tests/check_*; do
	[ -x "$t" ] && [ ! -d "$t" ] && cp "$t" "$out/tests/"
done
# The example handler module: the GPU suite loads it, and users can.
mkdir -p "$out/handlers"
cp "$build/gpu/example_handler.fatbin" "$build/tests/trap_handler.fatbin" \
	"$out/handlers/"
# redis-server for the Track A suite and benchmark (the GPU host has no
# packages): the binary with every library it loads, the C library and its
# loader included, started through that loader, so the host's own libc
# version does not matter.
rs=$(command -v redis-server || true)
if [ -n "$rs" ]; then
	mkdir -p "$out/redis"
	cp "$rs" "$out/redis/"
	ldd "$rs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
		while read -r lib; do cp -L "$lib" "$out/redis/"; done
	cat >"$out/bin/redis-server" <<'WRAP'
#!/bin/sh
d=$(cd "$(dirname "$0")/../redis" && pwd)
exec "$d/ld-linux-x86-64.so.2" --library-path "$d" "$d/redis-server" "$@"
WRAP
	chmod +x "$out/bin/redis-server"
fi
cp "$top/build-aux/bundle-run.sh" "$out/run-tests.sh"
cp "$top/build-aux/bundle-gpu-check.sh" "$out/gpu-check.sh"
chmod +x "$out/run-tests.sh" "$out/gpu-check.sh"
git -C "$top" rev-parse --short HEAD >"$out/VERSION" 2>/dev/null || echo unknown >"$out/VERSION"
echo "bundle: $out ($(du -sh "$out" | cut -f1)); on the GPU host run: $out/run-tests.sh"
