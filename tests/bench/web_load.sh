#!/bin/bash
# Load on the recipient lookup API while mail flows (issue 6): WEB_CLIENTS
# (200) concurrent HTTP clients (wrk, keep-alive) look up recipients for
# WEB_SECONDS (10) against tlsgated's API in the test world, while
# smtp-source pushes mail through the gateway; and as long without them.
# WEB_ROUNDS (3) rounds of both. Prints each round's mail rates, the last
# lookup run's rate and latency, wrk's errors (must be none), and the
# median of the rounds' mail-rate ratios (must stay within 5%). WEB_RATE:
# the daemon's --web-rate (its default when unset). Not part of the test
# run; meant for make bench.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/world/lib.sh

CLIENTS=${WEB_CLIENTS:-200}
SECS=${WEB_SECONDS:-10}
ROUNDS=${WEB_ROUNDS:-3}
SESS=${BENCH_SESSIONS:-10}
SINK=198.51.100.31
command -v wrk >/dev/null || { echo "web_load: wrk missing (make deps)" >&2; exit 1; }

world_up || exit 1
world_trap
world_exec mx-plain ip addr add $SINK/24 dev eth0
world_exec mx-plain sh -c "ulimit -n 16384; exec smtp-sink -u postfix $SINK:25 1024" >/dev/null 2>&1 &
SINK_PID=$!
trap 'kill $SINK_PID 2>/dev/null; world_down >/dev/null 2>&1' EXIT
_world_wait_port mx-plain $SINK 25 || exit 1
STORE=$WORLD_DIR/gw/state/tlsgate.db
world_gw_start --store "$STORE" --web 127.0.0.1:8025 ${WEB_RATE:+--web-rate "$WEB_RATE"} || exit 1
now=$(date +%s)
sqlite3 "$STORE" "INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES
	('198.51.100.20', 'mx-tls.world.test', 'tls.test', 0, $((now + 3600))),
	('198.51.100.30', 'mx-plain.world.test', 'plain.test', 0, $((now + 3600)));
	INSERT INTO tls_history(mx, level, best_version, last_version, last_cipher, first_seen, last_seen)
	VALUES ('mx-tls.world.test', 2, 772, 772, 4866, $now, $now),
	       ('mx-plain.world.test', 1, 0, 0, 0, $now, $now)"

# mail_rate SECONDS: messages/s smtp-source gets through the gateway.
mail_rate() {
	local t0 t1 n=0 end=$((SECONDS + $1))
	t0=$(date +%s.%N)
	while [ $SECONDS -lt $end ]; do
		world_exec in smtp-source -s "$SESS" -m 200 -l 2048 -f sender@in.world.test \
			-t user@plain.test "$SINK:25" >/dev/null 2>&1 || { echo "smtp-source failed" >&2; return 1; }
		n=$((n + 200))
	done
	t1=$(date +%s.%N)
	echo "scale=1; $n / ($t1 - $t0)" | bc
}

lua=$WORLD_DIR/lookup.lua
cat >"$lua" <<'LUA'
local addrs = { "a@tls.test", "b@plain.test", "c@tls.test,d@plain.test", "e@unknown.test" }
local i = 0
request = function()
	i = i + 1
	return wrk.format("GET", "/api/v1/recipient?address=" .. addrs[i % #addrs + 1])
end
LUA

# Rounds of both runs, the order alternating, so that drift in this shared
# machine's load touches both alike; the median of the rounds' ratios.
: >"$WORLD_DIR/web_load.ratios"
: >"$WORLD_DIR/wrk.all"
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then order="alone loaded"; else order="loaded alone"; fi
	for run in $order; do
		if [ "$run" = alone ]; then
			base=$(mail_rate "$SECS") || exit 1
			continue
		fi
		world_exec gw sh -c "ulimit -n 16384; exec wrk -t2 -c$CLIENTS -d${SECS}s --timeout 5s --latency -s $lua http://127.0.0.1:8025" \
			>"$WORLD_DIR/wrk.out" 2>&1 &
		wrk_pid=$!
		loaded=$(mail_rate "$SECS") || exit 1
		wait $wrk_pid
		cat "$WORLD_DIR/wrk.out" >>"$WORLD_DIR/wrk.all"
	done
	ratio=$(echo "scale=3; $loaded / $base" | bc)
	echo "$ratio" >>"$WORLD_DIR/web_load.ratios"
	printf '== round %d (%s, %ss each): mail %s messages/s alone, %s with %d lookup clients: ratio %s\n' \
		"$r" "$order" "$SECS" "$base" "$loaded" "$CLIENTS" "$ratio"
done
echo "== the last round's wrk:"
sed 's/^/   wrk: /' "$WORLD_DIR/wrk.out"
errors=$(grep -E 'Socket errors|Non-2xx' "$WORLD_DIR/wrk.all" || true)
ratio=$(sort -g "$WORLD_DIR/web_load.ratios" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "mail rate ratio (with lookups / without), median of $ROUNDS rounds: $ratio"
echo "lookup errors: ${errors:-none}"
ok=1
[ -z "$errors" ] || ok=0
[ "$(echo "$ratio >= 0.95" | bc)" = 1 ] || ok=0
[ "$ok" = 1 ] && echo "web_load: PASS" || echo "web_load: FAIL (errors, or mail rate below 95%)"
[ "$ok" = 1 ]
