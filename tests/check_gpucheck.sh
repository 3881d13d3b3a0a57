#!/bin/sh
# The GPU host's check script (build-aux/bundle-gpu-check.sh) where CI can
# run it: its argument errors, and its compare mode on the CPU backend
# (GPUQ_COMPARE_BACKEND=cpu), with a bundle's bin/ made of this build's
# binaries.  It asserts that a good comparison passes and prints medians
# for both builds, and that a build whose broker does not start fails it.
set -u
top=${abs_top_builddir:-.}
src=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/gpuq-gpucheck-test-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; [ -f "$dir/out" ] && tail -30 "$dir/out"; exit 1; }

[ -x "$top/bench/gpuq-bench" ] || { echo "no gpuq-bench"; exit 77; }
mkdir "$dir/bin"
ln -s "$top/broker/gpuqd" "$top/broker/gpuqctl" "$top/bench/gpuq-bench" "$dir/bin/"
cp "$src/build-aux/bundle-gpu-check.sh" "$dir/gpu-check.sh"
check="$dir/gpu-check.sh"

echo "== argument errors exit 2"
for args in "bogus" "compare" "compare $dir/nonexistent" \
	"compare $dir/bin/gpuqd 0" "compare $dir/bin/gpuqd x"; do
	# shellcheck disable=SC2086
	sh "$check" $args >/dev/null 2>&1
	[ $? -eq 2 ] || fail "gpu-check.sh $args did not exit 2"
done
GPUQ_COMPARE_DIV=x sh "$check" compare "$dir/bin/gpuqd" >/dev/null 2>&1
[ $? -eq 2 ] || fail "GPUQ_COMPARE_DIV=x did not exit 2"

echo "== compare, CPU backend, one round"
GPUQ_COMPARE_BACKEND=cpu GPUQ_COMPARE_DIV=40 \
	sh "$check" compare "$top/broker/gpuqd" 1 >"$dir/out" 2>&1 ||
	fail "compare exited $?"
grep -q "^gpu-check: PASS" "$dir/out" || fail "compare did not pass"
for l in this other; do
	for w in echo checksum plain-checksum; do
		grep -Eq "^$l $w +[0-9]+ runs p50 +[0-9.]+ us +p99 +[0-9.]+ us" "$dir/out" ||
			fail "no median line for $l $w"
	done
	grep -Eq "^$l throughput +[0-9]+ runs +[0-9.]+ M msg/s" "$dir/out" ||
		fail "no throughput median for $l"
done
grep -E "^(this|other) " "$dir/out" | tail -8

echo "== compare against a build whose broker does not start"
printf '#!/bin/sh\nexit 1\n' >"$dir/dead-gpuqd"
chmod +x "$dir/dead-gpuqd"
GPUQ_COMPARE_BACKEND=cpu GPUQ_COMPARE_DIV=40 \
	sh "$check" compare "$dir/dead-gpuqd" 1 >"$dir/out" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "compare with a dead broker exited $rc, not 1"
grep -q "^gpu-check: FAIL" "$dir/out" || fail "compare with a dead broker did not say FAIL"
grep -q "broker did not start" "$dir/out" || fail "the dead broker was not named"
echo "gpu-check smoke: ok"
