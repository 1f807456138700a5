#!/bin/bash
# End-to-end: the verdict-table row "any destination | TLS below the
# policy's minimum version, or a banned cipher | normal sender: as
# plaintext | secure-mode sender: block", on real Postfix traffic.
#
# mx-tls is made to offer TLS 1.2 only. One secure-mode sender is a source
# address (192.0.2.25, 2001:db8:1::25): the sending Postfix has a second
# smtp transport bound to it, chosen per recipient address
# (secure@tls.test, secure@tls6.test). The policy also names a secure-mode
# sender domain, secure.world.test, which is hidden inside TLS: so every
# weak handshake may carry its mail, and the gateway resets it (rule
# secure-sender-domain). The sending Postfix (smtp_tls_security_level =
# may) defers, and once the message is older than minimal_backoff_time it
# retries without TLS, where MAIL FROM is judged (issue 18, item 6).
#
#  1. policy minimum TLS 1.3, IPv4 and IPv6: a normal sender's mail is
#     deferred at first (TLS 1.2 handshake reset) and then delivered in
#     plaintext, never over the weak TLS; the history counts plaintext. A
#     secure sender domain's mail is not delivered: it bounces with the
#     gateway's 550 5.7.4 once Postfix falls back to plaintext. The secure
#     source's mail is not delivered: both sides are reset after the
#     ServerHello, the sending Postfix logs the reset TLS handshake and
#     defers (4.7.5); a block event with rule secure-sender-source and the
#     reason "TLS version below the policy minimum".
#  2. policy minimum 1.2 but the cipher mx-tls negotiates with Postfix's
#     client (posttls-finger inside mx-tls, not through the gateway)
#     banned: the same as 1, with the reason "banned TLS cipher suite".
#  3. control: policy minimum 1.2, nothing banned: the secure source's mail
#     is delivered over TLS (so 1 and 2 were the policy, not the setup).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

# A key and a signed policy, before the world: the daemon loads it at start.
policy_keys
trap 'rm -rf "$POL"' EXIT
SEC4=192.0.2.25
SEC6=2001:db8:1::25
# sign_policy FILE SERIAL TLS_JSON: write and sign a policy.
sign_policy() {
	local f=$1 serial=$2 tls=$3
	cat >"$f" <<-EOF
		{
			"policy_version": 1,
			"serial": $serial,
			"expires": "2099-01-01T00:00:00Z",
			"tls": $tls,
			"secure_mode": {
				"sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ],
				"sender_sources": [ "$SEC4/32", "$SEC6/128" ]
			}
		}
	EOF
	policy_sign "$f" "$serial" 2099-01-01T00:00:00Z
}
sign_policy "$POL/p10.json" 10 '{ "min_version": "1.3" }' ||
	{ echo "Bail out! cannot sign the policy"; exit 1; }

world_e2e_setup --policy-key "$POL/pub.key" --policy "$POL/p10.json"
trap 'world_down >/dev/null 2>&1; rm -rf "$POL"' EXIT

DB=$WORLD_DIR/gw/state/tlsgate.db
IN=$WORLD_DIR/in
# send_to TO SUBJECT: a message from sender@in.world.test; its Message-ID.
send_to() {
	local id file
	id=$(world_msgid)
	file=$WORLD_DIR/msg/${id%@*}
	mkdir -p "$WORLD_DIR/msg"
	world_make_message "$file" "$id" "$1" "$2" && world_inject "$file" sender@in.world.test "$1" && echo "$id"
}
blocks() { # blocks MX REASON_TEXT: block events for MX from a secure source
	sql "select count(*) from events where kind='block' and rule='secure-sender-source' and mx='$1' and verdict='block-perm' and reason like '%$2%'"
}

# mx-tls: TLS 1.2 only.
mxcf() { world_exec mx-tls postconf -c "$WORLD_DIR/mx-tls/etc" -e "$@"; }
mxcf 'smtpd_tls_protocols=!SSLv2,!SSLv3,!TLSv1,!TLSv1.1,!TLSv1.3' \
	'smtpd_tls_mandatory_protocols=!SSLv2,!SSLv3,!TLSv1,!TLSv1.1,!TLSv1.3' &&
	world_exec mx-tls postfix -c "$WORLD_DIR/mx-tls/etc" reload >/dev/null 2>&1 ||
	{ echo "Bail out! cannot reconfigure mx-tls"; exit 1; }
# The sender: the secure source addresses and a transport bound to them.
world_exec in ip addr add $SEC4/24 dev eth0 &&
	# deprecated at once: never picked as the source of the normal
	# transport, still usable when bound explicitly
	world_exec in ip -6 addr add $SEC6/64 dev eth0 nodad preferred_lft 0 &&
	printf 'smtpsec   unix  -       -       n       -       -       smtp\n  -o smtp_bind_address=%s\n  -o smtp_bind_address6=%s\n' \
		$SEC4 $SEC6 >>"$IN/etc/master.cf" &&
	printf 'secure@tls.test\tsmtpsec:[198.51.100.20]\nsecure@tls6.test\tsmtpsec:[2001:db8:2::20]\n' \
		>>"$IN/etc/transport" &&
	world_exec in postfix -c "$IN/etc" reload >/dev/null 2>&1 ||
	{ echo "Bail out! cannot reconfigure the sender"; exit 1; }
sleep 1

check "policy serial 10 (minimum TLS 1.3) in force" [ "$(world_stats 'j["policy"]["serial"]')" = 10 ]

# counted_plaintext PP0 PT0: passed_plaintext grew beyond PP0 while
# passed_tls stayed PT0.
counted_plaintext() {
	[ "$(world_stats 'j["verdicts"]["passed_plaintext"]')" -gt "$1" ] &&
		[ "$(world_stats 'j["verdicts"]["passed_tls"]')" = "$2" ]
}

# secure_blocked V TO MX WHAT: a secure-source message to TO is not
# delivered: the gateway resets both sides after the ServerHello, so the
# sending Postfix fails the TLS handshake and defers. The message is then
# removed from the queue, so later counts are not its retries.
secure_blocked() {
	local v=$1 to=$2 mx=$3 what=$4 id qid lines n0 r0 src
	[ "$v" = 4 ] && src=$SEC4 || src=$SEC6
	n0=$(blocks "$mx" "$what")
	r0=$(world_stats 'j["verdicts"]["resets_injected"]')
	id=$(send_to "$to" "secure source, $what, IPv$v")
	qid=$(queue_id "$id")
	if wait_log "$qid: to=<$to>.*status=deferred" 30; then
		ok "IPv$v, $what: secure-source mail deferred"
	else
		not_ok "IPv$v, $what: secure-source mail deferred"
		world_dump_log in "$id"
	fi
	lines=$(grep -B1 "$qid: to=<$to>.*status=deferred" "$IN/maillog" | head -2)
	while read -r l; do diag "sender's log: $l"; done <<<"$lines"
	check "IPv$v, $what: the sending Postfix saw the TLS handshake reset" \
		grep -qE "SSL_connect error to .*\\[$mx\\]:25: Connection reset by peer" <<<"$lines"
	check "IPv$v, $what: ... and deferred with 4.7.5 Cannot start TLS" \
		grep -qE "$qid: .*dsn=4\\.7\\.5, status=deferred \\(Cannot start TLS: handshake failure\\)" <<<"$lines"
	check "IPv$v, $what: nothing reached mx-tls" world_not world_find_message mx-tls "$id"
	check "IPv$v, $what: a block event (secure-sender-source, block-perm, the reason) for MX $mx" \
		[ "$(blocks "$mx" "$what")" -gt "$n0" ]
	check "IPv$v, $what: ... from the secure source $src" \
		[ "$(sql "select count(*) from events where kind='block' and rule='secure-sender-source' and mx='$mx' and client like '%$src%'")" -ge 1 ]
	check "IPv$v, $what: the gateway injected resets (TLS had begun)" \
		[ "$(world_stats 'j["verdicts"]["resets_injected"]')" -gt "${r0:-0}" ]
	world_exec in postsuper -c "$IN/etc" -d "$qid" >/dev/null 2>&1
}

# normal_falls_back V DOM MX WHAT: a normal sender's mail over the weak
# handshake: deferred first (reset), then delivered in plaintext.
normal_falls_back() {
	local v=$1 dom=$2 mx=$3 what=$4 id qid f rcv
	pp0=$(world_stats 'j["verdicts"]["passed_plaintext"]')
	pt0=$(world_stats 'j["verdicts"]["passed_tls"]')
	id=$(send_to "user@$dom" "normal sender, $what, IPv$v")
	qid=$(queue_id "$id")
	if wait_log "$qid: to=<user@$dom>.*status=deferred \(Cannot start TLS" 30; then
		ok "IPv$v, $what: normal sender's first attempt deferred (weak handshake reset)"
	else
		not_ok "IPv$v, $what: normal sender's first attempt deferred (weak handshake reset)"
		world_dump_log in "$id"
	fi
	f=$(world_wait_delivered mx-tls "$id" 60)
	check "IPv$v, $what: ... then delivered once Postfix fell back to plaintext" [ -n "$f" ]
	rcv=$(grep -m1 -A3 '^Received: from in.world.test' "${f:-/dev/null}" | tr -s ' \t\n' ' ')
	diag "IPv$v: $rcv"
	check "IPv$v, $what: ... never over the weak TLS (plain ESMTP)" \
		eval 'grep -q "with ESMTP id" <<<"$rcv" && ! grep -q "using TLS" <<<"$rcv"'
	sleep 0.5
	check "IPv$v, $what: the history counts mx-tls as plaintext (level 1)" \
		[ "$(sql "select level from tls_history where mx='$mx'")" = 1 ]
	check "IPv$v, $what: the gateway passed it as plaintext, not TLS" \
		counted_plaintext "$pp0" "$pt0"
}
# secure_domain_bounced V DOM WHAT: mail from the secure sender domain
# over the weak handshake bounces at the plaintext fallback.
secure_domain_bounced() {
	local v=$1 dom=$2 what=$3 id qid file line
	id=$(world_msgid)
	file=$WORLD_DIR/msg/${id%@*}
	world_make_message "$file" "$id" "user@$dom" "secure domain, $what, IPv$v" &&
		world_inject "$file" alice@secure.world.test "user@$dom"
	qid=$(queue_id "$id")
	if wait_log "$qid: to=<user@$dom>.*status=bounced" 60; then
		line=$(grep "$qid: to=<user@$dom>.*status=bounced" "$IN/maillog" | tail -1)
		diag "$line"
		check "IPv$v, $what: secure sender domain bounced with the gateway's 550 5.7.4" \
			grep -q '550 5.7.4' <<<"$line"
	else
		not_ok "IPv$v, $what: secure sender domain bounced with the gateway's 550 5.7.4"
		world_dump_log in "$id"
	fi
	check "IPv$v, $what: ... and never reached mx-tls" world_not world_find_message mx-tls "$id"
}

# The cipher mx-tls negotiates with Postfix's TLS client at TLS 1.2: asked
# by posttls-finger (the same client code) inside mx-tls, not through the
# gateway.
CIPHER=$(MAIL_CONFIG=$IN/etc world_exec mx-tls posttls-finger -c -l may "[198.51.100.20]" 2>&1 |
	sed -n 's/.*TLSv1\.2 with cipher \([A-Za-z0-9_-]*\).*/\1/p' | head -1)

# 1. Minimum TLS 1.3, IPv4 and IPv6.
for v in 4 6; do
	if [ $v = 4 ]; then dom=tls.test mx=198.51.100.20; else dom=tls6.test mx=2001:db8:2::20; fi
	normal_falls_back $v $dom $mx "TLS 1.2 < 1.3"
	secure_domain_bounced $v $dom "TLS 1.2 < 1.3"
	secure_blocked $v "secure@$dom" $mx "TLS version below the policy minimum"
done

# 2. A banned cipher: the one mx-tls just negotiated, by its IANA name.
IANA=$(openssl ciphers -stdname -V "$CIPHER" 2>/dev/null | awk -v c="$CIPHER" '$5 == c { print $3 }')
diag "cipher negotiated: $CIPHER = ${IANA:-?}"
if [ -z "$IANA" ]; then
	not_ok "the negotiated cipher has an IANA name"
else
	sign_policy "$POL/p11.json" 11 "{ \"min_version\": \"1.2\", \"banned_ciphers\": [ \"$IANA\" ] }"
	ans=$(world_ctl policy apply "$POL/p11.json" 2>&1)
	diag "policy apply: $ans"
	check "policy serial 11 (minimum 1.2, $IANA banned) applied" \
		[ "$(world_stats 'j["policy"]["serial"]')" = 11 ]
	normal_falls_back 4 tls.test 198.51.100.20 "banned cipher"
	secure_blocked 4 secure@tls.test 198.51.100.20 "banned TLS cipher suite"
fi

# 3. Control: nothing weak any more; the secure source gets through.
sign_policy "$POL/p12.json" 12 '{ "min_version": "1.2" }'
world_ctl policy apply "$POL/p12.json" >/dev/null 2>&1
check "policy serial 12 (minimum 1.2, nothing banned) applied" \
	[ "$(world_stats 'j["policy"]["serial"]')" = 12 ]
id=$(send_to secure@tls.test "secure source, acceptable TLS")
f=$(world_wait_delivered mx-tls "$id" 30)
check "control: the secure source's mail is delivered over TLS 1.2 once acceptable" \
	grep -q 'using TLSv1.2 with cipher' "${f:-/dev/null}"
check "control: ... and it came from the secure source address" \
	grep -qF "[$SEC4]" "${f:-/dev/null}"

done_testing
