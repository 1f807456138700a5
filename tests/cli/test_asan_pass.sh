#!/bin/bash
# The sanitizer pass (issue 20.11): `make asan` builds the binaries with
# ASan + UBSan into their own directory, `make test` builds them, `make`
# alone does not, and tests/run.sh runs the Zeek replay against them and
# fails on a sanitizer report - also one from a process whose exit status
# the test never sees (as the daemon's, or here a child of
# tlsgate-replay). The end-to-end half (test_plaintext.sh with the ASan
# tlsgated) is run by tests/run.sh itself. TAP output.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-$BUILD/asan}
VEC=${TLSGATE_VECTORS:-$(pwd)/../shared/vectors}
# world_not_in WORD TEXT: TEXT does not mention WORD.
world_not_in() { ! grep -qF -- "$1" <<<"$2"; }

# --- the Makefile ---------------------------------------------------------------
plan=$(make -n asan 2>/dev/null)
check "make asan builds into $BUILD/asan with -fsanitize=address,undefined" \
	grep -qE "BUILD=$BUILD/asan .*-fsanitize=address,undefined" <<<"$plan"
check "make test builds the sanitizer binaries (asan in its recipe)" \
	grep -qE '^	\$\(MAKE\) all fuzz-build asan$' Makefile
all_plan=$(make -n all 2>/dev/null)
check "make (all) does not build them" world_not_in "$BUILD/asan" "$all_plan"

# --- the binaries ---------------------------------------------------------------
for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
	check "$ASAN_BUILD/$b is built with ASan (make asan)" grep -qa __asan_init "$ASAN_BUILD/$b"
done

# --- tests/run.sh ---------------------------------------------------------------
TMP=$(mktemp -d /tmp/tlsgate-asan-pass.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
if [ ! -d "$VEC/zeek/baselines" ]; then
	ok "tests/run.sh fails on a sanitizer report # SKIP Zeek vectors not found at $VEC"
	done_testing
	exit
fi
# The real binaries: no report, the pass counts it.
out=$(TEST_LOGDIR=$TMP/logs1 ASAN_BUILD=$ASAN_BUILD tests/run.sh "asan: tests/replay/test_zeek.sh" 2>&1)
rc=$?
diag "$(tail -1 <<<"$out")"
check "tests/run.sh runs the Zeek replay with the ASan binaries (status $rc)" \
	grep -q '^    ok - asan: tests/replay/test_zeek.sh: no sanitizer report' <<<"$out"
check "... and passes" [ "$rc" -eq 0 ]
check "... with the replay's own results counted" \
	grep -qE '^[1-9][0-9]* passed, 0 failed' <<<"$(tail -1 <<<"$out")"

# tlsgate-replay whose child reads past a heap block and exits 1 unseen,
# then runs the real one: the replay's results are all fine.
mkdir -p "$TMP/asan"
for b in tlsgated tlsgatectl tlsgate-probe; do ln -s "$(pwd)/$ASAN_BUILD/$b" "$TMP/asan/$b"; done
cat >"$TMP/bad.c" <<EOF
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	(void)argc;
	pid_t p = fork();
	if (p == 0) {
		char *x = malloc(8);
		volatile char c = x[8];
		(void)c;
		free(x);
		_exit(0);
	}
	waitpid(p, NULL, 0);
	execv("$(pwd)/$ASAN_BUILD/tlsgate-replay", argv);
	return 127;
}
EOF
if ${CC:-gcc} -g -fsanitize=address -o "$TMP/asan/tlsgate-replay" "$TMP/bad.c" 2>"$TMP/cc.err"; then
	out=$(TEST_LOGDIR=$TMP/logs2 ASAN_BUILD=$TMP/asan tests/run.sh "asan: tests/replay/test_zeek.sh" 2>&1)
	rc=$?
	diag "$(grep -E 'sanitizer report|passed,' <<<"$out" | tr '\n' '|')"
	check "a report from a child whose exit nobody sees fails the run (status $rc)" [ "$rc" -ne 0 ]
	check "... as a sanitizer report, with the replay's results still ok" \
		grep -q '^    not ok - asan: tests/replay/test_zeek.sh: sanitizer report' <<<"$out"
	check "... and shows the report" grep -q 'ERROR: AddressSanitizer: heap-buffer-overflow' <<<"$out"
else
	not_ok "cc -fsanitize=address for the faulty tlsgate-replay: $(head -1 "$TMP/cc.err")"
fi

done_testing
