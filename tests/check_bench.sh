#!/bin/sh
# gpuq-bench smoke run (CI): a private gpuqd on the CPU backend, then short
# gpuq-bench runs - closed loop with every baseline, open loop, and a tiny
# sweep with the SVG - asserting that the JSON has the expected fields and
# non-zero rates.  No speed is asserted: see docs/benchmarking.md.
set -u
top=${abs_top_builddir:-.}
bench="$top/bench/gpuq-bench"
gpuqd=${GPUQD:-"$top/broker/gpuqd"}
dir=$(mktemp -d /tmp/gpuq-bench-test-XXXXXX)
sock="$dir/gpuqd.sock"
bpid=
fail() { echo "FAIL: $*"; [ -f "$dir/gpuqd.log" ] && tail -20 "$dir/gpuqd.log"; exit 1; }
cleanup() {
	[ -n "$bpid" ] && kill "$bpid" 2>/dev/null && wait "$bpid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

[ -x "$bench" ] || { echo "no $bench"; exit 77; }
"$gpuqd" -s "$sock" -b cpu \
	-q echo,handler=echo,slot_bytes=1024,capacity=1024,cq_capacity=512,max_clients=8 \
	-q crc,handler=checksum,slot_bytes=512,capacity=1024,cq_capacity=512,max_clients=8 \
	2>"$dir/gpuqd.log" &
bpid=$!
i=0
until [ -S "$sock" ]; do
	i=$((i + 1))
	[ $i -gt 200 ] && fail "gpuqd did not start"
	sleep 0.05
done

# $1: file, rest: python expressions over d (the document) that must hold.
check_json() {
	f=$1; shift
	if ! command -v python3 >/dev/null; then
		grep -q '"msgs_per_s":[1-9]' "$f" || fail "$f: no rate"
		return 0
	fi
	python3 - "$f" "$@" <<'EOF' || fail "$f: JSON check"
import json, sys
d = json.load(open(sys.argv[1]))
def res(p, s):
    return [r for r in p["results"] if r["system"] == s][0]
for e in sys.argv[2:]:
    if not eval(e):
        print("failed:", e)
        sys.exit(1)
EOF
}

echo "== closed loop, every baseline, verified results"
"$bench" -s "$sock" -q crc -p 2 -n 20000 -z 256 -b 64 -w 256 --verify --json \
	--baseline all --redis-spawn --baseline-max-s 5 >"$dir/one.json" ||
	fail "closed-loop run failed: $(cat "$dir/one.json")"
check_json "$dir/one.json" \
	'd["ok"] and d["all_ok"]' \
	'd["messages"] == 40000 and d["msgs_per_s"] > 0 and d["failed"] == 0' \
	'd["handler"] == "checksum" and d["payload_bytes"] == 256' \
	'd["latency_ns"]["count"] == 40000 and 0 < d["latency_ns"]["p50"] <= d["latency_ns"]["p99"] <= d["latency_ns"]["max"]' \
	'len(d["points"]) == 1' \
	'all(k in res(d["points"][0], "gpuq") for k in ("msgs_per_s", "latency_ns", "processes", "setup_us_max"))' \
	'len(res(d["points"][0], "gpuq")["processes"]) == 2' \
	'res(d["points"][0], "uds")["status"] == "ok" and res(d["points"][0], "uds")["messages"] > 0' \
	'res(d["points"][0], "uds")["gpuq_x"] > 0 and res(d["points"][0], "uds")["latency_ns"]["count"] == res(d["points"][0], "uds")["messages"]' \
	'res(d["points"][0], "redis")["status"] in ("ok", "skipped")' \
	'res(d["points"][0], "redis")["status"] != "ok" or (res(d["points"][0], "redis")["messages"] > 0 and res(d["points"][0], "redis")["gpuq_x"] > 0)' \
	'res(d["points"][0], "cuda")["status"] in ("ok", "not available")'

echo "== open loop"
"$bench" -s "$sock" -q echo -p 2 -z 512 -b 1 -r 4000 -d 0.5 --json \
	--baseline uds >"$dir/open.json" || fail "open-loop run failed"
check_json "$dir/open.json" \
	'd["ok"] and d["mode"] == "open" and d["rate_offered"] == 4000' \
	'1500 <= d["messages"] <= 2100 and d["latency_ns"]["count"] == d["messages"]' \
	'res(d["points"][0], "uds")["status"] == "ok"'

echo "== tiny sweep with the SVG"
"$bench" -s "$sock" -q echo --sweep -d 0.2 --sizes 256,1024,4096 --scale 1,2 \
	--batches 1,64 --lat-rate 2000 --baseline uds --json --svg "$dir/r.svg" \
	>"$dir/sweep.json" || fail "sweep failed"
check_json "$dir/sweep.json" \
	'd["all_ok"]' \
	'[p["x"] for p in d["points"] if p["section"] == "payload"] == [256, 1024]' \
	'[p["x"] for p in d["points"] if p["section"] == "producers"] == [1, 2]' \
	'[p["batch"] for p in d["points"] if p["section"] == "batch"] == [1, 64]' \
	'all(r["msgs_per_s"] > 0 for p in d["points"] for r in p["results"])'
head -c 200 "$dir/r.svg" | grep -q '<svg' || fail "no SVG"
tail -c 10 "$dir/r.svg" | grep -q '</svg>' || fail "SVG not closed"
grep -q 'Latency CDF' "$dir/r.svg" || fail "SVG has no latency CDF"
if command -v xmllint >/dev/null; then
	xmllint --noout "$dir/r.svg" || fail "SVG is not well-formed"
fi

echo "== kv: the client KV API next to Redis MSET/MGET"
if command -v redis-server >/dev/null || [ -x "${REDIS_SERVER:-}" ]; then
	"$bench" kv -p 2 -n 5000 -r 2 -b 128 --json >"$dir/kv.json" ||
		fail "kv bench failed"
	check_json "$dir/kv.json" \
		'd["bad"] == 0 and d["procs"] == 2' \
		'all(d[p][k] > 0 for p in ("put", "get") for k in ("gpuq_ops_s", "redis_ops_s"))'
else
	echo "no redis-server: kv bench not run"
fi

echo "== table: the hash table's inserts and lookups (host threads)"
"$bench" table --device cpu --slots 100000 --lookups 200000 --json \
	>"$dir/table.json" || fail "table bench failed"
check_json "$dir/table.json" \
	'd["device"] == "cpu" and d["wrong"] == 0 and d["lookups"] == 200000' \
	'd["refused"] > 0 or d["found"] == d["lookups"]' \
	'd["inserts_per_s"] > 0 and d["lookups_per_s"] > 0'

echo "== floor: the round trip with no gpuq (needs a GPU; else status 77)"
"$bench" floor -n 1000 -z 64 --json >"$dir/floor.json" 2>"$dir/floor.err"
rc=$?
if [ $rc -eq 0 ] && ! command -v python3 >/dev/null; then
	grep -q '"p50_us":[0-9]' "$dir/floor.json" || fail "floor: no figures"
elif [ $rc -eq 0 ]; then
	check_json "$dir/floor.json" \
		'len(d["shapes"]) == 10 and d["count"] == 1000 and d["payload"] == 64' \
		'd["gap_ns"] == 500' \
		'all(0 < v["p50_us"] <= v["p90_us"] <= v["p99_us"] <= v["p999_us"] for v in d["shapes"].values())'
elif [ $rc -eq 77 ]; then
	grep -q "gpuq-bench floor: ." "$dir/floor.err" ||
		fail "floor without a GPU did not say why"
	echo "no usable GPU: $(cat "$dir/floor.err")"
else
	fail "floor exited $rc: $(cat "$dir/floor.err")"
fi
"$bench" floor -z 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "floor -z 0 did not exit 2"
"$bench" floor -z 361 >/dev/null 2>&1
[ $? -eq 2 ] || fail "floor -z 361 did not exit 2"
"$bench" floor -g 100001 >/dev/null 2>&1
[ $? -eq 2 ] || fail "floor -g 100001 did not exit 2"
"$bench" floor -g '' >/dev/null 2>&1
[ $? -eq 2 ] || fail "floor -g '' did not exit 2"

echo "== bad arguments exit 2"
"$bench" -s "$sock" -p 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "-p 0 did not exit 2"
echo "bench smoke: ok"
