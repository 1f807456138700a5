#!/bin/bash
# Runs every test: unit binaries (cmocka, TAP output), a short smoke of each
# libFuzzer target, the test scripts (TAP), and the sanitizer pass (the
# Zeek replay and one end-to-end test with the binaries of `make asan`,
# $BUILD/asan). Ends with the line
# "N passed, N failed" summed over all of them; exits non-zero on any failure.
# Usage: tests/run.sh [FILTER]   (FILTER: substring of the test's path)
set -u
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
FILTER=${1:-}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-15}
LOGDIR=${TEST_LOGDIR:-$BUILD/test-logs}
mkdir -p "$LOGDIR"
passed=0
failed=0
skipped=0
failed_names=()

# run_tap NAME TIMEOUT CMD...: run CMD, echo its output, count TAP results.
run_tap() {
	local name=$1 tmo=$2
	shift 2
	local log="$LOGDIR/$(echo "$name" | tr '/ ' '__').log"
	echo "# --- $name"
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1
	local rc=$?
	sed 's/^/    /' "$log" | grep -E '^    (ok|not ok|#|Bail)' | head -200
	local p f k
	# "# SKIP" results (e.g. vectors absent) count as skipped, either way.
	k=$(grep -cE '^ *(not )?ok .*# *(SKIP|skip)' "$log")
	p=$(grep -E '^ *ok ' "$log" | grep -cvE '# *(SKIP|skip)')
	f=$(grep -E '^ *not ok ' "$log" | grep -cvE '# *(SKIP|skip)')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "    not ok - $name exited with status $rc (see $log)"
		tail -20 "$log" | sed 's/^/    | /'
		f=1
	elif [ "$f" -ne 0 ]; then
		# what the failing script printed besides TAP (its stderr)
		grep -vE '^ *(ok|not ok|#|Bail)' "$log" | tail -40 | sed 's/^/    | /'
	fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ "$k" -eq 0 ]; then
		echo "    not ok - $name reported no results (see $log)"
		f=1
	fi
	skipped=$((skipped + k))
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$f" -eq 0 ] || failed_names+=("$name")
}

match() { [ -z "$FILTER" ] || [[ "$1" == *"$FILTER"* ]]; }

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	match "$t" || continue
	CMOCKA_MESSAGE_OUTPUT=TAP run_tap "$t" 300 "$t"
done

for f in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	match "$f" || continue
	run_tap "$f (smoke ${FUZZ_SMOKE_SECONDS}s)" $((FUZZ_SMOKE_SECONDS + 120)) \
		tests/fuzz/smoke.sh "$f" "$FUZZ_SMOKE_SECONDS"
done

for s in tests/*/test_*.sh; do
	[ -x "$s" ] || continue
	match "$s" || continue
	run_tap "$s" 900 "$s"
done

# The sanitizer pass: the Zeek replay and one end-to-end test again, with
# the binaries of `make asan` (ASan + UBSan, $BUILD/asan; `make test` builds
# them). Each report (AddressSanitizer, LeakSanitizer, UBSan) is written to
# $LOGDIR/asan/NAME/ - also the daemon's and the probe's, whose exit the
# test does not see - and fails the test it came from, as does one in the
# test's own output. No suppressions: none of these binaries leaks at exit
# (tlsgated after SIGTERM included) or in a library, so LSan stays strict.
ASAN_BUILD=${ASAN_BUILD:-$BUILD/asan}
# run_asan NAME CMD...: run_tap under the sanitizers' options, then one
# more result: no sanitizer report.
run_asan() {
	local name=$1 b
	shift
	local dir
	dir="$LOGDIR/asan/$(echo "$name" | tr '/ :' '___')"
	for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
		if ! grep -qa __asan_init "$ASAN_BUILD/$b" 2>/dev/null; then
			echo "# --- $name"
			echo "    not ok - $ASAN_BUILD/$b is not a sanitizer build (make asan)"
			failed=$((failed + 1))
			failed_names+=("$name")
			return
		fi
	done
	rm -rf "$dir" && mkdir -p "$dir" || return
	local log="$LOGDIR/$(echo "$name" | tr '/ ' '__').log" f0=$failed
	ASAN_OPTIONS="log_path=$dir/asan:detect_leaks=1:abort_on_error=0" \
		UBSAN_OPTIONS="log_path=$dir/ubsan:print_stacktrace=1:halt_on_error=1" \
		run_tap "$name" 900 "$@"
	local f1=$failed
	if compgen -G "$dir/*" >/dev/null ||
		grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"; then
		echo "    not ok - $name: sanitizer report (see $dir and $log)"
		cat "$dir"/* 2>/dev/null | head -60 | sed 's/^/    | /'
		failed=$((failed + 1))
		[ "$f1" -gt "$f0" ] || failed_names+=("$name")
	else
		echo "    ok - $name: no sanitizer report"
		passed=$((passed + 1))
	fi
}

if match "asan: tests/replay/test_zeek.sh"; then
	run_asan "asan: tests/replay/test_zeek.sh" env BUILD="$ASAN_BUILD" \
		TLSGATE_REPLAY="$ASAN_BUILD/tlsgate-replay" tests/replay/test_zeek.sh
fi
if match "asan: tests/e2e/test_plaintext.sh"; then
	run_asan "asan: tests/e2e/test_plaintext.sh" env WORLD_BUILD="$(pwd)/$ASAN_BUILD" \
		tests/e2e/test_plaintext.sh
fi

for n in "${failed_names[@]}"; do echo "FAILED: $n"; done
[ "$skipped" -eq 0 ] || echo "($skipped skipped; see '# SKIP' lines above for why)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
