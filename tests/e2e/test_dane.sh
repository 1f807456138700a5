#!/bin/bash
# End-to-end: DANE through the gateway, in the DNSSEC test world.
#
#  1. The sending host resolves a recipient domain's MX (a real query to the
#     world's validating unbound, whose answer crosses the gateway): the
#     tagger copies the answer, tlsgated learns address -> MX name -> domain.
#  2. tlsgated hands the learned domain to tlsgate-probe (validated DNS,
#     STARTTLS, DANE check), which records its verdict in the store.
#  3. For dane-bad.test (TLSA 3 1 1 that does not match mx-tls) a message to
#     that MX address is deferred - not bounced - and never delivered; the
#     block event names the DANE rule and the MX name learned from DNS.
#  4. For dane-ee.test (matching TLSA) a message is delivered over TLS and
#     the history records the MX at level dane.
#  5. DANE on the wire: with TLS 1.2 (the certificate is visible) the
#     gateway checks the chain against the validated TLSA RRset the probe
#     stored. The real certificate passes; then mx-tls presents another key
#     (what an interposed attacker would do to the MTA's connections while
#     the probe's earlier verdict still says "verified"): deferred, blocked
#     by the DANE rule as a mismatch seen on the wire.
# The two domains' MX hosts share mx-tls's address, so each part runs with
# a fresh store of address mappings (the gateway sees addresses only).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh
. tests/world/dns.sh

dns_world_setup
diag "world $WORLD_ID, resolver 203.0.113.10"
DB=$WORLD_DIR/gw/state/tlsgate.db
probe_verdict() { sql "select verdict from probe_results where domain='$1' and addr='198.51.100.20' order by id desc limit 1"; }
has_verdict() { [ -n "$(probe_verdict "$1")" ]; }
# deferred_line MSGID: waits for the sender's queue id of MSGID (queue_id
# waits until Postfix logged it), then up to 30 s for its deferral to
# user@tls.test; sets qid and line (that message's newest status line,
# empty when there is none: never another message's).
deferred_line() {
	line=
	qid=$(queue_id "$1") || { diag "the sender never logged message $1"; return 1; }
	wait_for 30 grep -qE " $qid: to=<user@tls.test>.*status=deferred" "$WORLD_DIR/in/maillog"
	line=$(grep -E " $qid: to=<user@tls.test>.*status=" "$WORLD_DIR/in/maillog" | tail -1)
	diag "$qid: ${line:-no status line}"
}
# not_bounced: the message of $qid (known) was not bounced.
not_bounced() { [ -n "$qid" ] && world_not grep -q " $qid: .*status=bounced" "$WORLD_DIR/in/maillog"; }
# sql_ge1 QUERY: the count QUERY gives is at least 1 (what the gateway
# writes is flushed to the store a moment after the packet: wait for it).
sql_ge1() { [ "$(sql "$1")" -ge 1 ] 2>/dev/null; }
# resolve DOMAIN MXHOST: what the sending MTA's resolver would ask.
resolve() {
	world_exec in dig +time=3 +tries=2 @203.0.113.10 MX "$1" >/dev/null &&
		world_exec in dig +time=3 +tries=2 @203.0.113.10 A "$2" >/dev/null
}

gw_start_probing

# 1-3: the mismatching TLSA.
resolve dane-bad.test mx-bad.test
check "DNS answers crossing the gateway were copied to the daemon" \
	world_in_range "$(world_stats 'j["dns"]["messages"]')" 2
check "the MX of dane-bad.test was learned" world_in_range "$(world_stats 'j["dns"]["mx_learned"]')" 1
# (The probe, started at once, may already have confirmed it: secure = 1.)
check "the address of mx-bad.test was learned" \
	[ "$(sql "select count(*) from addr_mx where addr='198.51.100.20' and mx='mx-bad.test' and domain='dane-bad.test'")" = 1 ]
if wait_for 60 has_verdict dane-bad.test; then
	ok "tlsgated probed the learned domain by itself"
else
	not_ok "tlsgated probed the learned domain by itself"
	tail -5 "$WORLD_DIR/gw/tlsgated.log" | sed 's/^/# /'
fi
check "the probe found the DANE mismatch (dane-fail)" [ "$(probe_verdict dane-bad.test)" = dane-fail ]
id=$(world_send user@tls.test "to a DANE-mismatch MX")
deferred_line "$id"
check "DANE mismatch: the message is deferred" grep -q 'status=deferred' <<<"$line"
check "DANE mismatch: not bounced" not_bounced
check "DANE mismatch: nothing delivered" world_not world_find_message mx-tls "$id"
check "block event with the DANE rule and the learned MX name" \
	wait_for 10 sql_ge1 "select count(*) from events where kind='block' and rule like 'dane%' and mx='mx-bad.test'"

# 4: the matching TLSA (a fresh address mapping: the gateway sees addresses).
sql "delete from addr_mx where addr='198.51.100.20'"
world_exec in postsuper -c "$WORLD_DIR/in/etc" -d ALL >/dev/null 2>&1
resolve dane-ee.test mx-ee.test
check "the address of mx-ee.test was learned" \
	[ "$(sql "select mx from addr_mx where addr='198.51.100.20'")" = mx-ee.test ]
if wait_for 60 has_verdict dane-ee.test; then ok "dane-ee.test probed"; else not_ok "dane-ee.test probed"; fi
check "the probe verified DANE (dane)" [ "$(probe_verdict dane-ee.test)" = dane ]
# TLS 1.2 from here on, so the certificate is on the wire (part 5); the
# history then remembers 1.2 as the best version of this MX.
# Without aNULL: at level "may" Postfix would otherwise pick anonymous DH
# for TLS 1.2 and no certificate would be on the wire.
world_exec in postconf -c "$WORLD_DIR/in/etc" -e \
	'smtp_tls_protocols = !SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.3' \
	'smtp_tls_exclude_ciphers = aNULL' &&
	world_exec in postfix -c "$WORLD_DIR/in/etc" reload >/dev/null 2>&1
sleep 1
check "the probe stored mx-ee.test's validated TLSA RRset" \
	world_in_range "$(sql "select count(*) from tlsa where mx='mx-ee.test'")" 1
id=$(world_send user@tls.test "to a DANE-verified MX")
f=$(world_wait_delivered mx-tls "$id" 30)
check "DANE verified (certificate checked on the wire): delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
check "... and it was TLS 1.2" grep -q 'TLSv1.2' "${f:-/dev/null}"
check "history records mx-ee.test at level dane" \
	wait_for 10 sql_ge1 "select count(*) from tls_history where mx='mx-ee.test' and level = 3"

# 5: DANE on the wire with TLS 1.2: another key.
rogue=$WORLD_DIR/ca/rogue.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=mx-ee.test -keyout "$rogue.key" -out "$rogue.crt" >/dev/null 2>&1 &&
	cat "$rogue.key" "$rogue.crt" >"$rogue" && chmod 600 "$rogue" &&
	world_exec mx-tls postconf -c "$WORLD_DIR/mx-tls/etc" -e "smtpd_tls_chain_files = $rogue" &&
	world_exec mx-tls postfix -c "$WORLD_DIR/mx-tls/etc" reload >/dev/null 2>&1
# A new connection must see the new key: no cached SMTP connection, no old
# smtpd process.
world_exec in postconf -c "$WORLD_DIR/in/etc" -e 'smtp_connection_cache_on_demand = no' &&
	world_exec in postfix -c "$WORLD_DIR/in/etc" reload >/dev/null 2>&1
sleep 3
id=$(world_send user@tls.test "DANE on the wire, another key")
deferred_line "$id"
check "another key on the wire: deferred" grep -q 'status=deferred' <<<"$line"
check "another key on the wire: nothing delivered" world_not world_find_message mx-tls "$id"
check "block event: DANE mismatch seen on the wire (not the probe's verdict)" \
	wait_for 10 sql_ge1 "select count(*) from events where kind='block' and rule like 'dane%' and reason like '%does not match the DANE TLSA%' and mx='mx-ee.test'"
diag "$(sql "select reason from events where kind='block' and mx='mx-ee.test' order by id desc limit 1")"
grep -E 'dane on the wire|mx-ee' "$WORLD_DIR/gw/tlsgated.log" | tail -5 | sed 's/^/# /'

# 6: DANE does not lapse with the TLSA TTL (issue 18 item 2): the stored
# RRset's expiry passes (set in the past, as time would), the probe's
# verdict still says DANE: the substituted key is still refused.
sql "update tlsa set expires = strftime('%s','now') - 1 where mx='mx-ee.test'"
sleep 3 # the gateway's per-address cache (2 s)
id=$(world_send user@tls.test "DANE on the wire, another key, TLSA TTL over")
deferred_line "$id"
check "TLSA past its TTL, another key on the wire: still deferred" grep -q 'status=deferred' <<<"$line"
check "TLSA past its TTL: nothing delivered" world_not world_find_message mx-tls "$id"


done_testing
