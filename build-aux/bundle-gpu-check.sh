#!/bin/sh
# Inside a gpuq bundle on a GPU host: the suites on the CUDA backend, the
# throughput benchmark, and compute-sanitizer (memcheck, racecheck) over a
# broker running the persistent kernel.  One command, so one device session.
#   ./gpu-check.sh [all|suites|bench|sweep|tracka|sanitize]
#   (default: all but sweep and tracka)
#   ./gpu-check.sh compare OTHER_GPUQD [ROUNDS]
#   (this bundle's gpuqd against another build's, brokers alternating:
#   a lone message's round trip and throughput, with medians)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/bin"
fail=0
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

mode=${1:-default}
usage() {
	echo "usage: $0 [all|suites|bench|sweep|tracka|sanitize]" >&2
	echo "       $0 compare OTHER_GPUQD [ROUNDS]" >&2
	exit 2
}
case $mode in
default|all|suites|bench|sweep|tracka|sanitize) ;;
compare)
	other=${2:-}
	rounds=${3:-3}
	[ -x "$other" ] || usage
	div=${GPUQ_COMPARE_DIV:-1}
	case $rounds$div in *[!0-9]*) usage ;; esac
	[ "$rounds" -gt 0 ] && [ "$div" -gt 0 ] || usage
	;;
*) usage ;;
esac
# After the arguments: a refused call leaves nothing behind.
tmp=$(mktemp -d /tmp/gpuq-gpu-XXXXXX)
want() { [ "$mode" = default ] && [ "$1" != sweep ] && [ "$1" != tracka ] &&
		return 0
	[ "$mode" = all ] || [ "$mode" = "$1" ]; }
[ -x "$bin/redis-server" ] && export REDIS_SERVER="$bin/redis-server"

if want suites; then
echo "== suites on the CUDA backend"
"$here/run-tests.sh" cuda || fail=1
fi

start_broker() { # socket, then gpuqd args
	s=$1; shift
	"$@" -s "$s" >>"$tmp/gpuqd.log" 2>&1 &
	bpid=$!
	for _ in $(seq 600); do
		"$bin/gpuqctl" -s "$s" status >/dev/null 2>&1 && return 0
		kill -0 $bpid 2>/dev/null || break # it exited: no use waiting
		sleep 0.05
	done
	echo "broker did not start: $*"; cat "$tmp/gpuqd.log"; fail=1; return 1
}
stop_broker() { # socket
	"$bin/gpuqctl" -s "$1" shutdown >/dev/null
	wait $bpid
}

# compare: one gpuq-bench run; a line "label what msg/s p50_us p99_us" in
# $tmp/compare.txt, from its JSON.
cmp_run() { # label, what, gpuq-bench args
	l=$1 w=$2
	shift 2
	j=$(timeout 60 "$bin/gpuq-bench" -s "$S" --json "$@")
	rc=$?
	if [ $rc -ne 0 ] || ! printf '%s' "$j" | grep -q '"all_ok":true'; then
		echo "$l $w: gpuq-bench exit $rc, not all ok"
		fail=1
		return
	fi
	# The first of each key is the run's total (producers' come after).
	r=$(first msgs_per_s) p50=$(first p50) p99=$(first p99)
	echo "$l $w $r $p50 $p99" | tee -a "$tmp/compare.txt" | awk '{ printf "%s %s: %.2f M msg/s, p50 %.2f us, p99 %.2f us\n", $1, $2, $3 / 1e6, $4 / 1e3, $5 / 1e3 }'
}
first() { # key: its first number in $j
	printf '%s' "$j" | tr ',{' '\n\n' | sed -n "s/^\"$1\":\([0-9.]*\)\$/\1/p" | head -1
}

if [ "$mode" = compare ]; then
echo "== compare: $bin/gpuqd (this) against $other (other), $rounds rounds"
S="$tmp/cmp.sock"
backend=${GPUQ_COMPARE_BACKEND:-cuda} # cpu: try the script without a GPU
# GPUQ_COMPARE_DIV: fewer messages, for tests/check_gpucheck.sh
lone=$((40000 / div)) many=$((1000000 / div))
stamped=stamped=1,stamped_results=1
for _ in $(seq "$rounds"); do
	for l in this other; do
		g="$bin/gpuqd"
		[ $l = other ] && g=$other
		: >"$tmp/gpuqd.log" # this broker's log alone, for its profile
		start_broker "$S" "$g" -b "$backend" \
			-q "echo,handler=echo,workers=32,capacity=16384,$stamped" \
			-q "checksum,handler=checksum,workers=32,capacity=65536,$stamped" \
			-q "plain,handler=checksum,workers=32,capacity=65536" || continue
		for _ in 1 2 3; do
			cmp_run $l echo -q echo -p 1 -n $lone -b 1 -w 1 --verify
		done
		for _ in 1 2; do
			cmp_run $l checksum -q checksum -p 1 -n $lone -b 1 -w 1 --verify
		done
		cmp_run $l plain-checksum -q plain -p 1 -n $lone -b 1 -w 1 --verify
		cmp_run $l throughput -q checksum -p 14 -n $many -b 1024 -w 8192
		stop_broker "$S" || fail=1
		# With GPUQ_CUDA_PROFILE=1 in the environment, each broker
		# logs its queues' kernel profiles as it stops.
		grep " profile" "$tmp/gpuqd.log" | sed "s/^/$l: /"
	done
done
echo "== compare: medians (runs; msg/s, and for one in flight p50 and p99)"
sort -k2,2 -k1,1 "$tmp/compare.txt" | awk '
	function med(a, n,    i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
			}
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function flush() {
		if (!n)
			return
		if (key ~ / throughput$/)
			printf "%-26s %2d runs %8.2f M msg/s\n", key, n, med(r, n) / 1e6
		else
			printf "%-26s %2d runs p50 %6.2f us  p99 %6.2f us\n", key, n,
				med(p, n) / 1e3, med(q, n) / 1e3
		n = 0
	}
	{ k = $1 " " $2; if (k != key) { flush(); key = k }
	  n++; r[n] = $3; p[n] = $4; q[n] = $5 }
	END { flush() }'
fi # compare: every other part is for its own mode, so on to the verdict

if want bench || want sweep; then
echo "== benchmark (gpuq-bench, CUDA backend)"
S="$tmp/bench.sock"
# Workers and windows as tuned on an H100 (docs/benchmarking.md).
B="timeout 60 $bin/gpuq-bench -s $S"
# a closed-loop round trip: its percentiles, then the totals
lat() { grep -E "^(system|gpuq |aggregate|attach)"; }
if start_broker "$S" "$bin/gpuqd" -b cuda \
	-q echo,handler=echo,workers=32,capacity=16384 \
	-q checksum,handler=checksum,workers=32,capacity=65536 \
	-q big,handler=checksum,slot_bytes=4096,capacity=16384,workers=64; then
	want bench && for p in 1 4 8 14; do
		$B -q checksum -p $p -n $((4000000 / p)) -b 256 -w 4096 | tail -2
	done
	if want bench; then
	$B -q checksum -p 14 -n 1000000 -b 1024 -w 8192 | tail -2
	# the same with every result compared with the reference
	$B -q checksum -p 14 -n 1000000 -b 1024 -w 8192 --verify | tail -2
	$B -q echo -p 8 -n 500000 -b 256 -w 4096 | tail -2
	$B -q big -z 4096 -p 14 -n 60000 -b 64 -w 1024 | tail -2
	$B -q checksum -p 1 -n 50000 -b 1 -w 1 | lat
	$B -q echo -p 1 -n 50000 -b 1 -w 1 | lat
	# the predecessor's design (a cudaMemcpy per message) in the same run
	$B -q checksum -p 4 -n 200000 -b 256 --baseline cuda,uds \
		--baseline-max-s 5 | tail -4
	fi
	# The matrix with same-run baselines (the predecessor's per-message
	# cudaMemcpy design and a Unix-socket server); files go to $OUT.
	out=${OUT:-$tmp}
	if want sweep; then
	timeout 300 "$bin/gpuq-bench" -s "$S" -q big --sweep --scale 1,4,14 \
		--sizes 256,1024,4096 --batches 1,256,4096 --baseline cuda,uds \
		-d 1 --json-file "$out/gpu-sweep.json" --svg "$out/gpu-sweep.svg" |
		tail -60 || fail=1
	fi
	"$bin/gpuqctl" -s "$S" status
	stop_broker "$S" || fail=1
fi
# Stamped slots (docs/api.md) with the same queue settings, in a broker
# of their own: with the queues above beside them the worker blocks
# would not all be resident at once.
if want bench && start_broker "$S" "$bin/gpuqd" -b cuda \
	-q secho,handler=echo,workers=32,capacity=16384,stamped=1 \
	-q schecksum,handler=checksum,workers=32,capacity=65536,stamped=1; then
	$B -q schecksum -p 1 -n 50000 -b 1 -w 1 | lat
	$B -q secho -p 1 -n 50000 -b 1 -w 1 | lat
	$B -q schecksum -p 14 -n 1000000 -b 1024 -w 8192 --verify | tail -2
	stop_broker "$S" || fail=1
fi
# Both stamped keys: the lowest round trip gpuq has (docs/api.md).
if want bench && start_broker "$S" "$bin/gpuqd" -b cuda \
	-q secho2,handler=echo,workers=32,capacity=16384,stamped=1,stamped_results=1; then
	for i in 1 2 3; do $B -q secho2 -p 1 -n 50000 -b 1 -w 1 | lat; done
	stop_broker "$S" || fail=1
fi
# Only now, with the broker above gone: its persistent kernels stay
# resident while idle, and without MPS the kernels of two processes
# time-slice the GPU, so either bench below measured about half its
# figure while that broker lived (benchmarking.md §8).
if want bench; then
	# the floor under those round trips: the same exchange with no gpuq
	# around it (benchmarking.md §8.4)
	timeout 60 "$bin/gpuq-bench" floor || fail=1
	# the hash table in VRAM: 16M slots at 50 % load, 200M lookups
	timeout 60 "$bin/gpuq-bench" table --device cuda || fail=1
	# the KV API on a table in VRAM against Redis MSET/MGET, same run
	# (14 producers, 32 worker blocks: benchmarking.md §1.2)
	for kb in 1024 4096; do
		timeout 120 "$bin/gpuq-bench" kv --backend cuda \
			--gpuqd "$bin/gpuqd" -p 14 -n 100000 -b $kb -w 32 ||
			fail=1
	done
fi
fi

# Track A on this host: Redis's own ceiling and Track A end to end, same
# run, with the bundled redis-server, on the CPU and the CUDA backend.
if want tracka; then
	# One result per entry (the default), then results grouped 64 to an
	# entry (redis_result_batch, docs/tracka.md).
	for rb in 1 64; do
	for be in cpu cuda; do
		echo "== Track A (gpuq-bench tracka, $be backend, --result-batch $rb)"
		timeout 300 "$bin/gpuq-bench" tracka --gpuqd "$bin/gpuqd" \
			--backend $be --repeat 3 --result-batch $rb | tail -12 ||
			fail=1
	done
	# Past one Redis: 8 streams on 8 redis-servers, one gpuqd
	# (docs/tracka.md, shards); the issue's 5x the predecessor is here.
	echo "== Track A, 8 shards (gpuq-bench tracka --shards 8, cuda backend, --result-batch $rb)"
	timeout 300 "$bin/gpuq-bench" tracka --gpuqd "$bin/gpuqd" \
		--backend cuda --shards 8 -n 4000000 --result-batch $rb |
		tail -8 || fail=1
	done
fi

cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# A sanitized broker can stall for seconds; clients should wait, not call
# it dead.
export GPUQ_HEARTBEAT_TIMEOUT_MS=600000
# One queue per sanitized broker: the sanitizers run kernels one at a time,
# so a second queue's persistent kernel would never start beside the first.
# Each case: a queue spec, then the gpuq-bench load to drive it.
# GPUQ_SANITIZE_TOOLS: the compute-sanitizer tools (memcheck and racecheck
# are what the GPU suite must pass; synccheck and initcheck can be asked
# for).
tools=${GPUQ_SANITIZE_TOOLS:-memcheck racecheck}
sanitize_one() { # tool, queue spec, bench args...
	tool=$1 spec=$2; shift 2
	S="$tmp/$tool.sock"
	# Small windows: racecheck instruments every shared-memory access.
	if ! start_broker "$S" env GPUQ_CUDA_WINDOW=64 \
		"$cs" --tool $tool --error-exitcode 9 "$bin/gpuqd" -b cuda -q "$spec"; then
		fail=1
		return
	fi
	timeout 120 "$bin/gpuq-bench" -s "$S" -q "${spec%%,*}" "$@" | tail -1
	timeout 60 "$bin/gpuqctl" -s "$S" shutdown >/dev/null
	# a drain that hangs is a failure, not a hung check
	(sleep 120; kill -9 $bpid 2>/dev/null) & watchdog=$!
	wait $bpid
	rc=$?
	kill $watchdog 2>/dev/null
	echo "compute-sanitizer $tool ${spec%%,*}: exit $rc"
	[ $rc -eq 0 ] || fail=1
	grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error|error" "$tmp/gpuqd.log" | tail -3
	: >"$tmp/gpuqd.log"
}
want sanitize && for tool in $tools; do
	echo "== compute-sanitizer --tool $tool"
	sanitize_one $tool checksum,handler=checksum,workers=2 -p 2 -n 2000
	sanitize_one $tool vector,handler=vector,slot_bytes=1024,workers=2 -z 1024 -p 2 -n 1000
	# the retry and dead-letter paths
	sanitize_one $tool faulty,handler=checksum,workers=2,fail_ppm=100000,max_attempts=2 -p 2 -n 2000
	# stamped slots: the read-ahead by a whole warp, and by part of one
	# (a window of 16), then the in-order kernel's stamped copy; the
	# first and the last with stamped results too (no fence, entries
	# restamped on the way out)
	sanitize_one $tool stamped,handler=echo,stamped=1,stamped_results=1,slot_bytes=256,workers=2 -z 256 -p 2 -n 2000 --verify
	sanitize_one $tool stamped16,handler=checksum,stamped=1,capacity=16,slot_bytes=100,workers=2 -z 100 -p 2 -n 2000 --verify
	sanitize_one $tool stampedo,handler=echo,stamped=1,stamped_results=1,ordered=yes,workers=2 -p 2 -n 1000
	# one message in flight: the probes for a lone producer's next
	# message (design.md §10), by a whole warp and by part of one
	sanitize_one $tool lone,handler=echo,stamped=1,stamped_results=1,workers=2 -p 1 -n 300 -b 1 -w 1 --verify
	sanitize_one $tool lone16,handler=echo,stamped=1,stamped_results=1,capacity=16,slot_bytes=64,workers=1 -z 64 -p 1 -n 300 -b 1 -w 1 --verify
	# the same, run by the probing warp alone from shared memory
	# (design.md §10, step 5a): with retries and dead letters, and in a
	# loaded handler module
	sanitize_one $tool lonefail,handler=checksum,stamped=1,stamped_results=1,workers=2,fail_ppm=200000,fail_attempts=1 -p 1 -n 300 -b 1 -w 1 --verify
	sanitize_one $tool "loneupper,handler_module=$here/handlers/example_handler.fatbin,result_bytes=256,stamped=1,stamped_results=1,workers=2" -p 1 -n 300 -b 1 -w 1
	# the in-order kernel, with retries
	sanitize_one $tool ordered,handler=echo,ordered=yes,workers=2,fail_ppm=200000,fail_attempts=1 -p 2 -n 1000
	# a loaded handler module (random payloads: some hold a NUL byte,
	# which it refuses, so its dead-letter path runs too)
	sanitize_one $tool "upper,handler_module=$here/handlers/example_handler.fatbin,result_bytes=256,workers=2" -p 2 -n 1000
done
# The hash tables in VRAM (keysum, kv, exactly-once) through the suites
# that use them, every broker they start under the sanitizer: GPUQD names
# a wrapper, and a broker that exits with the sanitizer's status fails the
# test that stops it.  The tests stop brokers with SIGTERM, which would
# kill compute-sanitizer itself (status 0xf, no drain, no report), and
# passed on to the sanitizer's child it still left no exit code to report
# (status 1), so the wrapper asks gpuqd to shut down through its socket,
# as an operator would.  Every broker of both suites has one queue, for
# the reason above.
# The kv kernel also through gpuq-bench kv, at a bench's load: a sanitizer
# report is a failure.  Racecheck makes the kernel slow enough that only
# a small put phase and get phase fit the bench's 30 s calls.
# A test that gives up on a broker SIGKILLs the wrapper, which cannot pass
# that on: compute-sanitizer and its gpuqd would run on, a persistent
# kernel time-slicing the GPU with whatever runs next (without MPS, any
# other gpuqd's kernels halve a benchmark's figures: benchmarking.md
# §1.2).  Stop what is left, politely first.
reap_sanitized() {
	pgrep -f "$cs" >/dev/null || return 0
	echo "stopping sanitized brokers left running: $(pgrep -f "$cs" | tr '\n' ' ')"
	pkill -TERM -f "$bin/gpuqd"
	sleep 5
	pkill -KILL -f "$cs"
	pkill -KILL -f "$bin/gpuqd"
	return 0
}
want sanitize && for tool in $tools; do
	w="$tmp/gpuqd-$tool"
	cat >"$w" <<WRAP
#!/bin/sh
sock=
prev=
for a in "\$@"; do [ "\$prev" = -s ] && sock=\$a; prev=\$a; done
GPUQ_CUDA_WINDOW=64 "$cs" --tool $tool --error-exitcode 9 "$bin/gpuqd" "\$@" &
p=\$!
trap '"$bin/gpuqctl" -s "\$sock" shutdown >/dev/null 2>&1 &' TERM INT
while :; do
	wait \$p
	rc=\$?
	kill -0 \$p 2>/dev/null || exit \$rc
done
WRAP
	chmod +x "$w"
	echo "== compute-sanitizer --tool $tool: check_kv, check_state"
	GPUQD="$w" GPUQ_SUITE_TIMEOUT=300 "$here/run-tests.sh" cuda check_kv \
		check_state || fail=1
	reap_sanitized
	echo "== compute-sanitizer --tool $tool: gpuq-bench kv"
	n=3000
	[ $tool = racecheck ] && n=300
	GPUQ_BENCH_KEEP=1 timeout 200 "$bin/gpuq-bench" kv --backend cuda \
		--gpuqd "$w" -p 2 -n $n -b 64 -r 1 -w 2 >"$tmp/kv.out" 2>&1 || fail=1
	grep -E "put|get|bad" "$tmp/kv.out"
	d=$(sed -n 's/.*kept //p' "$tmp/kv.out")
	if [ -n "$d" ] && grep -E "Invalid __|Race reported|ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: [1-9]" "$d/gpuqd.log"; then
		fail=1
	fi
	[ -n "$d" ] && rm -rf "$d"
	reap_sanitized
done
rm -rf "$tmp"
echo "gpu-check: $([ $fail -eq 0 ] && echo PASS || echo FAIL)"
exit $fail
