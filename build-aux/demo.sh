#!/bin/sh
# The main job: set up, build, start gpuqd on the detected backend (CUDA if a
# GPU is usable, CPU otherwise), run several producer processes through the
# checksum and vector handlers, check every result, print what happened and
# stop the broker.
#   build-aux/demo.sh [PRODUCERS] [MESSAGES_PER_QUEUE_PER_PRODUCER]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
producers=${1:-4}
count=${2:-50000}
"$top/build-aux/setup-debian.sh"
echo "== building (build/)"
"$top/build-aux/build.sh" "$top/build"
bin="$top/build"
run=$(mktemp -d /tmp/gpuq-demo-XXXXXX)
sock="$run/gpuqd.sock"
echo "== starting gpuqd (backend auto) on $sock"
"$bin/broker/gpuqd" -s "$sock" -b auto \
	-q checksum,handler=checksum,slot_bytes=1024,workers=2 \
	-q vector,handler=vector,slot_bytes=1024,workers=2 2>"$run/gpuqd.log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$run"' EXIT
for _ in $(seq 100); do
	"$bin/broker/gpuqctl" -s "$sock" status >/dev/null 2>&1 && break
	sleep 0.05
done
cat "$run/gpuqd.log"
echo "== demo workload"
status=0
"$bin/bench/gpuq-demo" -s "$sock" -p "$producers" -n "$count" || status=$?
echo "== broker counters (gpuqctl status)"
"$bin/broker/gpuqctl" -s "$sock" status
echo "== stopping gpuqd (SIGTERM: drain, then exit)"
kill -TERM $pid
wait $pid || status=$?
tail -n +2 "$run/gpuqd.log"
trap - EXIT
rm -rf "$run"
[ $status -eq 0 ] && echo "demo: PASS" || echo "demo: FAIL ($status)"
exit $status
