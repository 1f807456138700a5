#!/bin/sh
# Short smoke run of one libFuzzer target over its seed corpus; prints TAP.
# Usage: smoke.sh FUZZ_BINARY SECONDS
set -u
bin=$1; secs=$2
name=$(basename "$bin")
seeds="$(dirname "$0")/corpus/$name"
work=$(mktemp -d) || exit 2
trap 'rm -rf "$work"' EXIT
[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
	-print_final_stats=1 "$work" >"$work.log" 2>&1; then
	execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$')
	echo "ok - $name ran ${secs}s, ${execs:-?} executions, no finding"
else
	tail -40 "$work.log"
	echo "not ok - $name found a problem (crash, leak or timeout)"
fi
rm -f "$work.log"
