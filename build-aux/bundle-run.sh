#!/bin/sh
# Runner inside a gpuq bundle: run every test binary against the bundled
# gpuqd, on the backend given (default cuda), and summarise.
#   ./run-tests.sh [cuda|cpu] [test-name...]
set -u
here=$(cd "$(dirname "$0")" && pwd)
backend=${1:-cuda}
[ $# -gt 0 ] && shift
# GPUQD may name a wrapper (gpu-check.sh runs suites under compute-sanitizer).
export GPUQD="${GPUQD:-$here/bin/gpuqd}" GPUQCTL="$here/bin/gpuqctl" GPUQ_TEST_BACKEND="$backend"
export GPUQ_TEST_MODULE="${GPUQ_TEST_MODULE:-$here/handlers/example_handler.fatbin}"
# The bundled redis-server (Track A suites), when the bundle carries one.
[ -x "$here/bin/redis-server" ] && export REDIS_SERVER="$here/bin/redis-server"
export GPUQ_TEST_TRAP_MODULE="${GPUQ_TEST_TRAP_MODULE:-$here/handlers/trap_handler.fatbin}"
# The suites never touch CUDA in-process (gpuqd does), so check may fork.
export CK_FORK=${CK_FORK:-yes}
# Keep each test's broker directory, in a directory of this run's own, so
# that a failed suite's gpuqd logs can be shown below (a GPU host is
# usually reached for one command at a time).
export GPUQ_TEST_KEEP=1
export GPUQ_TEST_DIR=$(mktemp -d /tmp/gpuq-run-XXXXXX)
# check_auth's other user must reach the sockets below it (mktemp: 0700).
chmod 0755 "$GPUQ_TEST_DIR"
pass=0 fail=0 skip=0
tests=${*:-$(ls "$here/tests")}
# The last lines of up to four gpuqd logs that a failed suite left.
broker_logs() {
	find "$GPUQ_TEST_DIR" -name gpuqd.log 2>/dev/null | head -4 |
		while read -r f; do
			echo "-- $f"
			tail -12 "$f"
		done
}
for t in $tests; do
	timeout "${GPUQ_SUITE_TIMEOUT:-600}" "$here/tests/$t" >"/tmp/gpuq-bundle-$t.log" 2>&1
	rc=$?
	case $rc in
	0) pass=$((pass + 1)); echo "PASS: $t" ;;
	77) skip=$((skip + 1)); echo "SKIP: $t" ;;
	*) fail=$((fail + 1)); echo "FAIL: $t (exit $rc)"; tail -20 "/tmp/gpuq-bundle-$t.log"
	   broker_logs ;;
	esac
	rm -rf "${GPUQ_TEST_DIR:?}"/*
done
rm -rf "$GPUQ_TEST_DIR"
echo "backend $backend: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
