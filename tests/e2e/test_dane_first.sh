#!/bin/bash
# End-to-end: DANE from the first message (issue 18 item 1; RFC 7672). The
# sending host resolves dane-bad.test (TLSA 3 1 1 that does not match
# mx-tls's key) and sends at once, before any probe of that MX has ended:
# the gateway withholds the client's STARTTLS (TCP resends it) until its
# own probe of the MX tells the DANE state, then judges the handshake with
# it. The message is deferred, never delivered, and the block names the
# DANE rule; dane_waits counts the wait. Before, the first connection was
# judged without DANE and the message went out to the mismatching MX.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh
. tests/world/dns.sh

dns_world_setup
gw_start_probing

# The gateway's probe (from its outside address) cannot reach mx-tls for a
# few seconds, so the message certainly connects before the probe ends.
PROBE_BLOCK=(INPUT -s 198.51.100.1 -p tcp --dport 25 -j DROP)
world_exec mx-tls iptables -I "${PROBE_BLOCK[@]}"
trap 'world_exec mx-tls iptables -D "${PROBE_BLOCK[@]}" 2>/dev/null; world_down >/dev/null 2>&1' EXIT
t0=$SECONDS
world_exec in dig +time=3 +tries=2 @203.0.113.10 MX dane-bad.test >/dev/null &&
	world_exec in dig +time=3 +tries=2 @203.0.113.10 A mx-bad.test >/dev/null
id=$(world_send user@tls.test "first message to a DANE-mismatch MX")
qid=$(queue_id "$id")
first=$(sql "select count(*) from probe_results where addr='198.51.100.20'")
diag "probe results for the MX when the message was sent: $first"
sleep 3
world_exec mx-tls iptables -D "${PROBE_BLOCK[@]}"
if wait_for 60 grep -qE "$qid: to=<user@tls.test>.*status=(deferred|sent|bounced)" \
	"$WORLD_DIR/in/maillog"; then
	line=$(grep -E "$qid: to=<user@tls.test>.*status=" "$WORLD_DIR/in/maillog" | tail -1)
else
	line="(no outcome within 60 s)"
fi
diag "after $((SECONDS - t0)) s: $line"
check "first message to the DANE-mismatch MX: deferred" grep -q 'status=deferred' <<<"$line"
check "... and not delivered" world_not world_find_message mx-tls "$id"
check "... with the reason in SMTP: 4.7.5 naming the DANE mismatch, not a bare TLS reset" \
	grep -qE 'dsn=4\.7\.5.*tlsgate: .*DANE TLSA records of MX mx-bad\.test' <<<"$line"
check "the gateway waited for the MX's DANE state before STARTTLS" \
	[ "$(world_stats 'j["dane_waits"]["started"]')" -ge 1 ]
grep -E "withheld|goes on|block:" "$WORLD_DIR/gw/tlsgated.log" | cut -c1-200 | sed "s/^/# gw: /"
check "a block event names the DANE rule and the MX" \
	[ "$(sql "select count(*) from events where kind='block' and rule like 'dane%' and mx='mx-bad.test'")" -ge 1 ]
check "the probe's verdict is dane-fail" \
	[ "$(sql "select verdict from probe_results where addr='198.51.100.20' order by id desc limit 1")" = dane-fail ]

done_testing
