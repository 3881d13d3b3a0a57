#!/bin/sh
# Build the libFuzzer targets (control-message decoder, config parser) with
# clang + ASan + UBSan and fuzz each briefly on a copy of its seed corpus.
#   tests/fuzz/run-fuzz.sh [proto] [conf]       (default: both)
# Environment:
#   FUZZ_SECONDS  seconds of fuzzing per target (default 20)
#   FUZZ_WORKDIR  build and work here, and keep it (default: a temp dir,
#                 removed afterwards unless something failed)
#   FUZZ_ARGS     more libFuzzer flags, e.g. "-jobs=4 -workers=4"
#   FUZZ_CC       the compiler (default clang)
# Exit: 0 clean; 1 a crash, leak, UB, broken property or build error;
# 77 (skip) when clang or libFuzzer is not installed.  The repository's
# corpus is only read; new inputs go to the work dir's copy.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
fdir="$top/tests/fuzz"
secs=${FUZZ_SECONDS:-20}
cc=${FUZZ_CC:-clang}
targets=${*:-proto conf}

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "fuzz: SKIP: $cc not found (Debian: apt-get install clang libclang-rt-14-dev)"
	exit 77
fi

if [ -n "${FUZZ_WORKDIR:-}" ]; then
	work=$FUZZ_WORKDIR
	keep=1
	mkdir -p "$work"
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/gpuq-fuzz.XXXXXX")
	keep=0
fi
ok=0
# shellcheck disable=SC2317 # (called by the trap)
cleanup() {
	if [ "$keep" = 0 ] && [ "$ok" = 1 ]; then
		rm -rf "$work"
	else
		echo "fuzz: work dir kept: $work"
	fi
}
trap cleanup EXIT
mkdir -p "$work/include" "$work/bin" "$work/artifacts"

# The autotools config.h is not needed for these few files.
cat >"$work/include/config.h" <<'EOF'
#define _GNU_SOURCE 1
#define PACKAGE_VERSION "fuzz"
EOF

san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
cflags="-std=gnu11 -g -O1 -fno-omit-frame-pointer $san
 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
 -I$work/include -I$top"

# libFuzzer comes with clang's runtime package, not with clang itself.
cat >"$work/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	(void)d;
	(void)n;
	return 0;
}
EOF
# shellcheck disable=SC2086
if ! "$cc" $san -o "$work/probe" "$work/probe.c" >"$work/probe.log" 2>&1; then
	cat "$work/probe.log"
	echo "fuzz: SKIP: $cc cannot link -fsanitize=fuzzer (Debian: apt-get install libclang-rt-14-dev)"
	ok=1
	exit 77
fi

sources() {
	case $1 in
	proto) echo "tests/fuzz/fuzz_proto.c ipc/proto.c ipc/errors.c ipc/paths.c" ;;
	conf) echo "tests/fuzz/fuzz_conf.c broker/conf.c broker/handler_table.c ipc/errors.c ipc/paths.c" ;;
	*) echo "fuzz: unknown target '$1' (proto, conf)" >&2; exit 1 ;;
	esac
}

for t in $targets; do
	src=$(sources "$t")
	echo "fuzz: building fuzz_$t"
	# shellcheck disable=SC2086
	(cd "$top" && "$cc" $cflags -o "$work/bin/fuzz_$t" $src) || {
		echo "fuzz: FAIL: fuzz_$t does not build"
		exit 1
	}
done

# Symbolised stacks where llvm-symbolizer is installed.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && command -v llvm-symbolizer >/dev/null 2>&1; then
	ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
	export ASAN_SYMBOLIZER_PATH
fi
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS

show_artifacts() {
	for a in "$work"/artifacts/"$1"-*; do
		[ -f "$a" ] || continue
		echo "fuzz: reproducer $a ($(wc -c <"$a") bytes):"
		od -A x -t x1z -v "$a" | head -40
		echo "fuzz: re-run it with: $work/bin/fuzz_$1 $a"
	done
}

status=0
for t in $targets; do
	bin="$work/bin/fuzz_$t"
	log="$work/$t.log"
	case $t in
	proto) opts="-max_len=16384" ;;
	conf) opts="-max_len=8192 -dict=$fdir/conf.dict" ;;
	esac

	# Inputs that once crashed stay fixed: run each once.
	set --
	for f in "$fdir/crashes/$t"/*; do
		[ -f "$f" ] && set -- "$@" "$f"
	done
	if [ $# -gt 0 ]; then
		if ! "$bin" "$@" >"$work/$t-regress.log" 2>&1; then
			tail -60 "$work/$t-regress.log"
			echo "fuzz: FAIL: fuzz_$t: a saved crash in tests/fuzz/crashes/$t crashes again"
			status=1
			continue
		fi
		echo "fuzz: fuzz_$t: $# saved crash input(s) pass"
	fi

	rm -rf "$work/corpus/$t"
	mkdir -p "$work/corpus/$t"
	cp "$fdir/corpus/$t"/* "$work/corpus/$t/"
	echo "fuzz: running fuzz_$t for ${secs}s"
	# shellcheck disable=SC2086
	if (cd "$work" && "$bin" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 \
		-print_final_stats=1 -artifact_prefix="$work/artifacts/$t-" \
		$opts ${FUZZ_ARGS:-} "$work/corpus/$t") >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
		echo "fuzz: fuzz_$t: ok, ${execs:-?} runs, $cov," \
			"corpus $(find "$work/corpus/$t" -type f | wc -l) inputs"
	else
		tail -60 "$log"
		show_artifacts "$t"
		echo "fuzz: FAIL: fuzz_$t (log: $log)"
		status=1
	fi
done
[ "$status" = 0 ] && ok=1
exit "$status"
