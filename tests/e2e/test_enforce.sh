#!/bin/bash
# End-to-end: the verdict table enforced on real Postfix traffic, with a
# signed policy (minisign key and policy made at test time).
#
#  1. normal sender, plaintext destination: delivered; first-seen event.
#  2. secure-mode sender (envelope domain) to a plaintext MX, IPv4 and IPv6:
#     not delivered; the sending Postfix bounces it with the injected
#     "550 5.7.4 ... MX ... rule" in reply to MAIL FROM; a block event.
#  3. secure-mode sender to the STARTTLS MX: delivered over TLS.
#  4. TLS history: mx-tls stops offering STARTTLS (as a stripping attacker
#     would make it look): mail is deferred with 451 4.7.4 naming the rule
#     tls-history, the destination is locked and stays locked after STARTTLS
#     is back; a release through the control socket lets the queued mail go.
#  5. policy apply: a bad signature, a rollback, an expired policy and an
#     unknown field are each refused with one line, and the old policy
#     stays in force; the policy in force applied again is "unchanged", not
#     a refusal, but with a bad signature it is refused; a good one
#     applies, also from the drop directory.
#  6. inbound: a remote server (outside) that delivers to a secure-mode
#     recipient without TLS gets 550 5.7.4 at RCPT TO, from the gateway;
#     an ordinary recipient in the same session is not refused by it.
#  7. tlsgated killed: a connection from a secure-mode source address is
#     refused by the BPF program alone (fail-closed) while an ordinary source
#     still gets through (fail-open). The same after a deliberate stop
#     (SIGTERM), until tlsgated --remove.
#  8. a policy with a require_tls override as its only rule: mail to that
#     domain's plaintext MX is deferred (451 4.7.x, policy-require-tls) and
#     never reaches it; another domain on the same MX is delivered.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

# A key and a signed policy, before the world: the daemon loads it at start.
policy_keys
trap 'rm -rf "$POL"' EXIT
SECURE_SRC=192.0.2.25
# sign_policy FILE SERIAL EXPIRES [EXTRA_JSON]: write and sign a policy.
sign_policy() {
	local f=$1 serial=$2 exp=$3 extra=${4:-}
	cat >"$f" <<-EOF
		{
			"policy_version": 1,
			"serial": $serial,
			"expires": "$exp",
			$extra
			"secure_mode": {
				"sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ],
				"sender_sources": [ "$SECURE_SRC/32" ],
				"recipient_domains": [ { "domain": "vault.world.test", "subdomains": false } ]
			}
		}
	EOF
	policy_sign "$f" "$serial" "$exp"
}
sign_policy "$POL/p1.json" 10 2099-01-01T00:00:00Z

mkdir -p "$POL/drop"
world_e2e_setup --policy-key "$POL/pub.key" --policy "$POL/p1.json" --policy-dir "$POL/drop"
rm -f "$POL"/*.tmp
# The world trap must also remove the policy directory.
trap 'world_down >/dev/null 2>&1; rm -rf "$POL"' EXIT

DB=$WORLD_DIR/gw/state/tlsgate.db
maillog() { cat "$WORLD_DIR/in/maillog"; }
# ctl_raw COMMAND: one line to the control socket, the JSON answer out.
ctl_raw() {
	world_exec gw python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode()); out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
print(out.decode())' "$(world_control)" "$1"
}

serial=$(world_stats 'j["policy"]["serial"]')
check "the signed policy (serial 10) is in force at start" [ "$serial" = 10 ]

# 1. Normal sender, plaintext destination.
id=$(world_send user@plain.test "normal plaintext")
f=$(world_wait_delivered mx-plain "$id" 30)
check "normal sender: plaintext mail delivered" [ -n "$f" ]
sleep 0.5
check "first-seen event for the plaintext MX" \
	[ "$(sql "select count(*) from events where kind='first-seen' and mx='198.51.100.30'")" -ge 1 ]
check "TLS history records the plaintext MX as plaintext" \
	[ "$(sql "select level from tls_history where mx='198.51.100.30'")" = 1 ]

# 2. Secure-mode sender to the plaintext MX, IPv4 and IPv6.
for v in 4 6; do
	[ $v = 4 ] && to=user@plain.test mx=198.51.100.30 || { to=user@plain6.test; mx=2001:db8:2::30; }
	id=$(send_as alice@secure.world.test "$to" "secure plaintext IPv$v")
	qid=$(queue_id "$id")
	if wait_log "$qid: to=<$to>.*status=bounced" 30; then
		ok "IPv$v: secure-mode mail to a plaintext MX bounced"
	else
		not_ok "IPv$v: secure-mode mail to a plaintext MX bounced"
		world_dump_log in "$id"
	fi
	line=$(grep "$qid: to=<$to>" "$WORLD_DIR/in/maillog" | tail -1)
	diag "$line"
	check "IPv$v: the bounce carries the injected 550 5.7.4 in reply to MAIL FROM" \
		grep -qE 'said: 550 5\.7\.4 .*in reply to MAIL FROM' <<<"$line"
	check "IPv$v: the reason names the MX and the rule" \
		grep -qE "MX .*\\[$mx\\].*secure-sender-domain" <<<"$line"
	check "IPv$v: nothing reached the plaintext MX" world_not world_find_message mx-plain "$id"
	check "IPv$v: a block event names the rule and the sender domain" \
		[ "$(sql "select count(*) from events where kind='block' and rule='secure-sender-domain' and sender='secure.world.test' and mx='$mx'")" -ge 1 ]
done

# 3. Secure-mode sender to the STARTTLS MX.
id=$(send_as alice@secure.world.test user@tls.test "secure over TLS")
f=$(world_wait_delivered mx-tls "$id" 30)
check "secure-mode mail to the STARTTLS MX delivered" [ -n "$f" ]
check "... and over TLS" grep -qE 'with ESMTPS' "${f:-/dev/null}"
check "TLS history records mx-tls as TLS" \
	[ "$(sql "select level from tls_history where mx='198.51.100.20'")" = 2 ]

# 4. History downgrade: mx-tls without STARTTLS.
tls_off() {
	world_exec mx-tls postconf -c "$WORLD_DIR/mx-tls/etc" -e "smtpd_tls_security_level=$1" &&
		world_exec mx-tls postfix -c "$WORLD_DIR/mx-tls/etc" reload >/dev/null 2>&1
}
tls_off none
sleep 1
id=$(world_send user@tls.test "downgrade")
expect_deferred "$id" user@tls.test "STARTTLS missing at a TLS-history MX: deferred"
qid=$DEFERRED_QID
check "the deferral carries 451 4.7.4 and the rule tls-history" \
	grep -qE 'said: 451 4\.7\.4 .*tls-history' <<<"$DEFERRED_LINE"
check "the destination is locked in the store" \
	[ "$(sql "select locked from tls_history where mx='198.51.100.20'")" = 1 ]
tls_off may
sleep 1
n0=$(grep -c "$qid: to=<user@tls.test>.*deferred" "$WORLD_DIR/in/maillog")
flush
end=$((SECONDS + 20))
while [ "$SECONDS" -lt "$end" ] && [ "$(grep -c "$qid: to=<user@tls.test>.*deferred" "$WORLD_DIR/in/maillog")" -le "$n0" ]; do sleep 0.2; done
check "still locked with STARTTLS back: deferred again (operator must review)" \
	[ "$(grep -c "$qid: to=<user@tls.test>.*deferred" "$WORLD_DIR/in/maillog")" -gt "$n0" ]
check "the lock is not released by a good connection" \
	[ "$(sql "select locked from tls_history where mx='198.51.100.20'")" = 1 ]
ans=$(ctl_raw "release 198.51.100.20")
check "release through the control socket accepted" grep -q '"ok": true' <<<"$ans"
check "release event recorded" \
	[ "$(sql "select count(*) from events where kind='release' and mx='198.51.100.20'")" -ge 1 ]
flush
f=$(world_wait_delivered mx-tls "$id" 30)
check "after the release the deferred mail is delivered over TLS" grep -qE 'with ESMTPS' "${f:-/dev/null}"

# 5. Bad policies are refused; serial 10 stays in force.
refuse() { # refuse DESCRIPTION FILE PATTERN
	local ans
	ans=$(ctl_raw "policy-apply $2")
	diag "$1: $ans"
	if grep -q '"ok": false' <<<"$ans" && grep -qE "$3" <<<"$ans" &&
		[ "$(world_stats 'j["policy"]["serial"]')" = 10 ]; then
		ok "policy refused ($1), serial 10 still in force"
	else
		not_ok "policy refused ($1), serial 10 still in force"
	fi
}
sign_policy "$POL/bad.json" 11 2099-01-01T00:00:00Z
sed -i 's/secure.world.test/other.world.test/' "$POL/bad.json"
refuse "bad signature" "$POL/bad.json" 'signature'
sign_policy "$POL/old.json" 9 2099-01-01T00:00:00Z
refuse "rollback to serial 9" "$POL/old.json" 'serial|rollback'
sign_policy "$POL/exp.json" 12 2020-01-01T00:00:00Z
refuse "expired" "$POL/exp.json" 'expired'
sign_policy "$POL/unk.json" 13 2099-01-01T00:00:00Z '"colour": "blue",'
refuse "unknown field" "$POL/unk.json" 'colour|unknown'
sign_policy "$POL/p14.json" 14 2099-01-01T00:00:00Z
ans=$(ctl_raw "policy-apply $POL/p14.json")
check "a newer good policy applies" [ "$(world_stats 'j["policy"]["serial"]')" = 14 ]
# The same files again (what a restart or SIGHUP with an unchanged --policy
# does): nothing to apply, and not counted or logged as a refusal. The same
# JSON with a signature that does not verify is still refused.
r0=$(world_stats 'j["policy"]["refused"]')
ans=$(ctl_raw "policy-apply $POL/p14.json")
diag "same policy again: $ans"
check "re-applying the policy in force is answered unchanged" grep -q '"unchanged"' <<<"$ans"
check "... and is not counted as refused" [ "$(world_stats 'j["policy"]["refused"]')" = "$r0" ]
cp "$POL/p14.json" "$POL/p14b.json"
# one base64 character of the signature itself (past the key id) changed
awk 'NR == 2 { c = substr($0, 60, 1); $0 = substr($0, 1, 59) (c == "A" ? "B" : "A") substr($0, 61) } { print }' \
	"$POL/p14.json.minisig" >"$POL/p14b.json.minisig"
ans=$(ctl_raw "policy-apply $POL/p14b.json")
diag "same JSON, bad signature: $ans"
check "the policy in force with a bad signature is refused" \
	grep -qE '"ok": false.*signature|signature.*"ok": false' <<<"$ans"
# The drop directory: signature first, then the policy renamed into place.
sign_policy "$POL/p15.json" 15 2099-01-01T00:00:00Z
cp "$POL/p15.json.minisig" "$POL/drop/policy.json.minisig"
cp "$POL/p15.json" "$POL/drop/.policy.json.tmp" && mv "$POL/drop/.policy.json.tmp" "$POL/drop/policy.json"
end=$((SECONDS + 15))
while [ "$SECONDS" -lt "$end" ] && [ "$(world_stats 'j["policy"]["serial"]')" != 15 ]; do sleep 0.5; done
check "a policy dropped into the drop directory applies (serial 15)" \
	[ "$(world_stats 'j["policy"]["serial"]')" = 15 ]

# 6. Inbound: a plaintext delivery from outside to a secure-mode recipient.
inbound() { # inbound RCPT: the reply to RCPT TO, from mx-plain (outside) to in
	world_exec mx-plain python3 -c '
import smtplib, sys
s = smtplib.SMTP("192.0.2.10", 25, "mx-plain.world.test", timeout=10)
s.ehlo("mx-plain.world.test")
s.mail("someone@plain.test")
code, text = s.rcpt(sys.argv[1])
print(code, text.decode(errors="replace"))
try:
    s.quit()
except Exception:
    pass' "$1" 2>&1 | tail -1
}
ans=$(inbound alice@vault.world.test)
diag "RCPT TO:<alice@vault.world.test> from outside: $ans"
check "inbound plaintext to a secure-mode recipient: 550 5.7.4 at RCPT" grep -qE '^550 5\.7\.4 .*secure-recipient' <<<"$ans"
check "... and an event for it" \
	[ "$(sql "select count(*) from events where kind='block' and rule='secure-recipient' and recipient='vault.world.test'")" -ge 1 ]
ans=$(inbound bob@elsewhere.world.test)
diag "RCPT TO:<bob@elsewhere.world.test> from outside: $ans"
check "inbound to an ordinary recipient: answered by the MTA itself, not refused by tlsgate" \
	world_not grep -q 'tlsgate' <<<"$ans"

# 7. Fail-closed for the secure source, fail-open for the rest.
world_exec in ip addr add $SECURE_SRC/24 dev eth0
connect_from() { # connect_from SRC: true when a TCP connection to mx-plain:25 opens
	world_exec in python3 -c '
import socket, sys
s = socket.socket(); s.settimeout(3); s.bind((sys.argv[1], 0))
try:
    s.connect(("198.51.100.30", 25)); s.recv(100); sys.exit(0)
except OSError:
    sys.exit(1)' "$1"
}
check "daemon running: the secure source connects (judged by the daemon)" connect_from $SECURE_SRC
world_gw_kill
sleep 4 # > the 3 s heartbeat timeout
check "daemon killed: the secure-mode source is refused in the kernel" world_not connect_from $SECURE_SRC
check "daemon killed: an ordinary source still connects (fail-open)" connect_from 192.0.2.10
world_gw_start --policy-key "$POL/pub.key" >/dev/null 2>&1
check "restarted without --policy: the last good policy (serial 15) is back" \
	[ "$(world_stats 'j["policy"]["serial"]')" = 15 ]
check "restarted: the secure source connects again" connect_from $SECURE_SRC

# A deliberate stop (SIGTERM, systemctl stop) keeps secure mode closed too;
# tlsgated --remove takes the tagger away.
world_gw_stop
check "SIGTERM with secure-mode sources: tlsgated exits 0" [ $? -eq 0 ]
check "stopped: the secure-mode source is refused in the kernel at once" world_not connect_from $SECURE_SRC
check "stopped: an ordinary source still connects (fail-open)" connect_from 192.0.2.10
check "stopped: the log says so and how to remove it" \
	grep -q "tagger stays attached.*tlsgated --remove" "$WORLD_DIR/gw/tlsgated.log"
world_gw_remove
check "tlsgated --remove exits 0" [ $? -eq 0 ]
check "--remove: no NFQUEUE rule and no TC filter left in gw" world_gw_clean
check "--remove: pin dir removed" [ ! -e "$(world_pin_dir)" ]
check "--remove: the secure source connects (plain forwarding)" connect_from $SECURE_SRC

# 8. A policy whose only rule is a per-domain override (no secure mode):
# require_tls for plain.test, whose MX has no STARTTLS. The MAIL FROM
# cannot be final there: the RCPT TO that names the domain is refused.
cat >"$POL/p20.json" <<-EOF2
	{
		"policy_version": 1,
		"serial": 20,
		"expires": "2099-01-01T00:00:00Z",
		"domains": { "plain.test": { "require_tls": true } }
	}
EOF2
policy_sign "$POL/p20.json" 20 2099-01-01T00:00:00Z
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/p20.json" >/dev/null 2>&1
check "restarted with an override-only policy (serial 20)" \
	[ "$(world_stats 'j["policy"]["serial"]')" = 20 ]
id=$(world_send user@plain.test "required TLS, plaintext MX")
expect_deferred "$id" user@plain.test "require_tls for the recipient domain, plaintext MX: deferred"
check "the deferral carries 451 4.7 and the rule policy-require-tls" \
	grep -qE 'said: 451 4\.7\.[0-9] .*policy-require-tls' <<<"$DEFERRED_LINE"
check "nothing of it reached the MX" world_not world_find_message mx-plain "$id"
id=$(world_send user@plain6.test "no override, plaintext MX")
f=$(world_wait_delivered mx-plain "$id" 30)
check "another domain on the same MX, no override: delivered" [ -n "$f" ]

done_testing
