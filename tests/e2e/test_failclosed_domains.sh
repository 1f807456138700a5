#!/bin/bash
# End-to-end: secure-mode sender DOMAINS fail closed in the kernel alone
# (issue 18, item 5). The policy names secure.world.test as a secure-mode
# sender domain and no secure source prefix, so the sender host (in,
# 192.0.2.10) is an ordinary source: only the envelope domain can keep its
# mail off the wire.
#
#  1. daemon alive: the secure sender's mail to the plaintext MX is refused
#     by the daemon (bounced, 550 5.7.4), an ordinary sender's delivered.
#  2. tlsgated SIGKILLed, heartbeat older than --failclosed-ms: a real
#     Postfix's mail from alice@secure.world.test to the plaintext MX is not
#     delivered - the tagger drops its MAIL FROM and blocks the flow, so the
#     sender times out and defers it - while an ordinary sender's mail to
#     the same MX is delivered (fail-open). Timings are printed.
#  3. tlsgated restarted: the deferred secure mail is judged by the daemon
#     again (bounced) and never reaches the MX.
# Before this change the program let the secure sender's plaintext MAIL FROM
# through the queue's bypass, so check 2's "not delivered" failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

FAILCLOSED_MS=2000
policy_keys
trap 'rm -rf "$POL"' EXIT
cat >"$POL/p1.json" <<-EOF
	{
		"policy_version": 1,
		"serial": 1,
		"expires": "2099-01-01T00:00:00Z",
		"secure_mode": {
			"sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ]
		}
	}
EOF
policy_sign "$POL/p1.json" 1 2099-01-01T00:00:00Z

world_e2e_setup --policy-key "$POL/pub.key" --policy "$POL/p1.json" --failclosed-ms $FAILCLOSED_MS
trap 'world_down >/dev/null 2>&1; rm -rf "$POL"' EXIT

check "the policy (serial 1) is in force" [ "$(world_stats 'j["policy"]["serial"]')" = 1 ]
# The sender gives up on a silent server after 8 s instead of Postfix's
# 300 s, so that a dropped MAIL FROM shows as a deferral soon.
world_exec in postconf -c "$WORLD_DIR/in/etc" -e smtp_helo_timeout=8s smtp_mail_timeout=8s \
	smtp_rcpt_timeout=8s smtp_data_init_timeout=8s smtp_data_xfer_timeout=8s \
	smtp_data_done_timeout=8s >/dev/null
world_exec in postfix -c "$WORLD_DIR/in/etc" reload >/dev/null 2>&1
sleep 1

# 1. Daemon alive.
id=$(send_as alice@secure.world.test user@plain.test "secure, daemon alive")
qid=$(queue_id "$id")
check "alive: the secure sender's plaintext mail is bounced by the daemon" \
	wait_log "$qid: to=<user@plain.test>.*status=bounced.*5\\.7\\.4" 30
id=$(world_send user@plain.test "ordinary, daemon alive")
check "alive: an ordinary sender's mail is delivered" world_quiet world_wait_delivered mx-plain "$id" 30

# 2. Daemon killed.
world_gw_kill
t_kill=$(date +%s.%N)
sleep $((FAILCLOSED_MS / 1000 + 1))
diag "tlsgated SIGKILLed; waited $((FAILCLOSED_MS / 1000 + 1)) s (> --failclosed-ms $FAILCLOSED_MS)"

t0=$(date +%s.%N)
sid=$(send_as alice@secure.world.test user@plain.test "secure, daemon gone")
oid=$(world_send user@plain.test "ordinary, daemon gone")
if world_wait_delivered mx-plain "$oid" 40 >/dev/null 2>&1; then
	ok "gone: an ordinary sender's mail to the plaintext MX is delivered (fail-open)"
	diag "ordinary mail delivered $(echo "$(date +%s.%N) - $t0" | bc) s after injection"
else
	not_ok "gone: an ordinary sender's mail to the plaintext MX is delivered (fail-open)"
	world_dump_log in "$oid"
fi
sqid=$(queue_id "$sid")
if [ -n "$sqid" ] && wait_log "$sqid: to=<user@plain.test>.*status=deferred" 40; then
	ok "gone: the secure sender's mail is deferred"
	diag "deferred $(echo "$(date +%s.%N) - $t0" | bc) s after injection"
else
	not_ok "gone: the secure sender's mail is deferred"
	world_dump_log in "$sid"
fi
diag "$(grep "$sqid: to=<user@plain.test>" "$WORLD_DIR/in/maillog" | tail -1)"
check "gone: nothing of the secure sender's mail reached the plaintext MX" \
	world_not world_find_message mx-plain "$sid"
# The flow was cut at MAIL FROM: the sender's Postfix timed out there.
check "gone: the sender timed out at MAIL FROM (the dialog was cut there)" \
	grep -qE "$sqid: .*timed out while sending MAIL FROM" "$WORLD_DIR/in/maillog"
# A second attempt (a new connection) while the daemon is still gone.
flush
sleep 12
check "gone: still not delivered after a retry" world_not world_find_message mx-plain "$sid"
diag "daemon gone for $(echo "$(date +%s.%N) - $t_kill" | bc) s"

# 3. Daemon back: the deferred mail meets the daemon's refusal.
world_gw_start --policy-key "$POL/pub.key" --failclosed-ms $FAILCLOSED_MS >/dev/null 2>&1
check "restarted: the last good policy (serial 1) is back" \
	[ "$(world_stats 'j["policy"]["serial"]')" = 1 ]
t1=$(date +%s.%N)
flush
if wait_log "$sqid: to=<user@plain.test>.*status=bounced.*5\\.7\\.4" 60; then
	ok "restarted: the deferred secure mail is bounced by the daemon"
	diag "bounced $(echo "$(date +%s.%N) - $t1" | bc) s after the restart"
else
	not_ok "restarted: the deferred secure mail is bounced by the daemon"
	world_dump_log in "$sid"
fi
check "restarted: and never reached the plaintext MX" world_not world_find_message mx-plain "$sid"

done_testing
