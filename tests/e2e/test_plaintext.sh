#!/bin/bash
# End-to-end 1: plaintext mail to mx-plain (no STARTTLS), IPv4 and IPv6,
# through tlsgated. Each message must arrive intact, without TLS, and the
# daemon must have inspected its flow: while a connection is held open the
# flow is listed, not blocked, without TLS, with the start of its dialog
# (handshake, banner, EHLO and reply: >= 5 packets) read by the daemon: the
# client's commands that may be withheld (MAIL FROM) queued, the rest - the
# server's side, EHLO - copied from the reply ring while they pass (see
# TLSGATE_COPY_*); a Postfix delivery raises those counters by at least as
# much. (Whether
# the daemon keeps inspecting a plaintext flow to its end or offloads it once
# the policy has decided is the daemon's choice; both are accepted.)
#
# How this fails when it should: checked by deleting the daemon's NFQUEUE
# rules (iptables and ip6tables) right after start-up: mail is still
# delivered, but the queue counters stay flat and no flow is listed (so no
# reply is copied either): 10 checks failed when that was last tried, before
# the reply copies; the queued, copied and listed checks fail since. Without
# a daemon binary it bails out.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh

world_e2e_setup

for v in 4 6; do
	if [ "$v" = 4 ]; then
		domain=plain.test addr=198.51.100.30 server=198.51.100.30:25 client=192.0.2.10:
		rcvd="(unknown [192.0.2.10])"
	else
		domain=plain6.test addr=2001:db8:2::30 server="[2001:db8:2::30]:25" client="[2001:db8:1::10]:"
		rcvd="(unknown [IPv6:2001:db8:1::10])"
	fi

	# 1. A real Postfix delivery: sender "in" -> gw -> mx-plain.
	q0=$(world_stats 'j["queue"]["packets"]')
	k0=$(world_stats 'j["kernel"]["inspect"]["packets"]')
	r0=$(world_stats 'j["replies"]["read"]')
	id=$(world_send "user@$domain" "plaintext IPv$v")
	f=$(world_wait_delivered mx-plain "$id" 30)
	check "IPv$v: Postfix delivered the plaintext message to mx-plain" [ -n "$f" ]
	check "IPv$v: body intact" world_intact "$f" "$id"
	check "IPv$v: received from the sender's address without TLS" \
		grep -qF "Received: from in.world.test $rcvd" "${f:-/dev/null}"
	check "IPv$v: mx-plain received it with plain ESMTP" \
		grep -qE "by mx-plain\.world\.test \(Postfix\) with ESMTP id" "${f:-/dev/null}"
	# The counters are read after the connection closed (QUIT follows delivery).
	sleep 1
	q1=$(world_stats 'j["queue"]["packets"]')
	k1=$(world_stats 'j["kernel"]["inspect"]["packets"]')
	r1=$(world_stats 'j["replies"]["read"]')
	diag "IPv$v Postfix delivery: queue packets +$((q1 - q0)), kernel inspect packets +$((k1 - k0)), copied +$((r1 - r0))"
	check "IPv$v: the daemon read the dialog (>= 5 packets queued or copied)" \
		world_in_range $((q1 - q0 + r1 - r0)) 5
	check "IPv$v: the client's segments went through NFQUEUE (>= 2: SYN, MAIL FROM)" \
		world_in_range $((q1 - q0)) 2
	check "IPv$v: the tagger marked them for inspection (>= 2 packets)" world_in_range $((k1 - k0)) 2
	check "IPv$v: the server's replies and EHLO were copied, not queued (>= 3)" \
		world_in_range $((r1 - r0)) 3

	# 2. A connection held open after delivery, to see the live flow.
	hid=$(world_msgid)
	hfile=$WORLD_DIR/msg/${hid%@*}
	world_make_message "$hfile" "$hid" "user@$domain" "held plaintext IPv$v"
	world_smtp_hold "$addr" "user@$domain" "$hfile" 5
	f=$(world_wait_delivered mx-plain "$hid" 20)
	check "IPv$v: held session delivered its message intact" world_intact "$f" "$hid"
	verdict=$(world_flow "$server" 'j["verdict"]')
	queued=$(world_flow "$server" 'j["queued_packets"]')
	copied=$(world_flow "$server" 'j["copied_packets"]')
	fclient=$(world_flow "$server" 'j["client"]')
	tlsv=$(world_flow "$server" 'j["tls_version"]')
	diag "IPv$v live flow: $fclient -> $server verdict=$verdict queued_packets=$queued copied_packets=$copied tls_version=$tlsv"
	check "IPv$v: the live flow is listed and not blocked ($verdict)" \
		grep -qxE 'inspect|pass' <<<"$verdict"
	check "IPv$v: the flow's client is the sender" [ "${fclient#"$client"}" != "$fclient" ]
	check "IPv$v: its dialog reached the daemon (>= 5 packets queued or copied)" \
		world_in_range $((queued + copied)) 5
	check "IPv$v: its server side was copied (>= 2 packets)" world_in_range "$copied" 2
	check "IPv$v: the daemon saw no TLS on it" [ "$tlsv" = 0x0000 ]
	wait "$WORLD_HOLD_PID"
	check "IPv$v: the held session ended with QUIT" [ $? -eq 0 ]
done

done_testing
