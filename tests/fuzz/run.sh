#!/bin/sh
# make fuzz: run every libFuzzer target for SECONDS each, keeping the corpus
# under build/fuzz/corpus so later runs continue where this one stopped.
set -u
secs=${1:-300}
cd "$(dirname "$0")/../.." || exit 2
status=0
for bin in build/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus=build/fuzz/corpus/$name
	mkdir -p "$corpus"
	[ -d "tests/fuzz/corpus/$name" ] && cp -rn "tests/fuzz/corpus/$name"/. "$corpus"/
	echo "== $name for ${secs}s"
	"$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 "$corpus" 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' || true
	[ -z "$(ls crash-* leak-* timeout-* 2>/dev/null)" ] || status=1
done
exit $status
