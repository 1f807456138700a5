#!/bin/bash
# End-to-end: message content in the kernel. With secure-mode sender
# domains in the policy, a plaintext session must stay inspected to its end
# (a later MAIL FROM may name a secure domain), but its message content
# need not cross NFQUEUE: the daemon hands it to the BPF program
# (TLSGATE_CONTENT), or the program takes it at the 354 the daemon awaits,
# and passes segments until one holds a '.' alone between line ends and
# returns the flow there.
#
# For IPv4 and IPv6, two sessions to the plaintext MX (Postfix), each with
# a 4 MiB message with dot-led lines from an ordinary sender and a second
# transaction pipelined (RFC 2920) in the same write as its final ".":
#  A. the second sender is ordinary: both messages arrive intact (the
#     dot-stuffing too); content passed in the kernel (the tagger's content
#     counter), and kernel and NFQUEUE together carried all of it. How much
#     stays in the kernel is make bench's figure, not a test's: segments
#     scanned on two CPUs at once return the flow, and what is in flight
#     then crosses NFQUEUE (from 1% to most of it, run to run).
#  B. the second sender is in secure mode: its MAIL FROM gets the gateway's
#     550 5.7.4; the first message, withheld with it, gets 451 4.3.0 (the
#     client keeps it and retries); nothing reaches the MX; a block event.
#  C, D. the same with BDAT (RFC 3030) in pipelined 1 MiB chunks: the
#     chunks pass in the kernel unscanned; the secure MAIL FROM is refused
#     and nothing of its transaction arrives.
#  E. a server that never answers the chunks (IPv4): the refusal waits
#     10 s for those replies, then answers them itself (451 each) and the
#     secure MAIL FROM (550), one reply per command.
#  F. a secure-mode MAIL FROM split across segments (in its address, its
#     CRLF alone, a leading space) or sent right after a BDAT chunk's last
#     byte is refused; an ordinary one split the same way gets the
#     server's 250 (IPv4 and IPv6).
#  H. nothing pipelined: a message sent a second after the 354, its last
#     line and "." a second after the rest, has its end of data passed in
#     the kernel, and the next transaction's secure MAIL FROM is refused;
#     a 4 MiB message and one after it arrive intact (IPv4 and IPv6).
#  G. a new session from the address and port of an offloaded one that
#     closed with a RST (passed in the kernel): a secure-mode MAIL FROM in
#     it is refused, not passed on the old verdict (IPv4 and IPv6).
#  J. a Postfix that answers DATA a second late: the kernel turns the
#     flow to content at both 354s of a serial session (the daemon awaits
#     them, struct tlsgate_await), the daemon hands nothing over, and both
#     messages arrive intact (IPv4 and IPv6).
#     Their RCPT TO lines passed in the kernel too, judged by their domain,
#     and the daemon offloaded the flow at the QUIT after the second
#     message's end (read from its copy; the kernel no longer passes a flow
#     at a QUIT by itself: kernel.quit_passed stays 0).
#  K. one command at a time: a RCPT TO whose domain the policy leaves
#     alone passes in the kernel (kernel.rcpt_copied) and gets the server's
#     250; one to a subdomain of a require_tls domain after it, in another
#     case, is still withheld and gets the gateway's 451 4.7.4; a block
#     event names the recipient domain (IPv4 and IPv6). After a policy
#     apply that swaps the domain, the dropped one passes in the kernel and
#     the added one is refused.
#  L. a policy applied while a RCPT TO's copy is unread: that RCPT TO is
#     judged under the policy it passed under (the daemon reads its copies
#     first), the session lives on, and the new policy's domain is refused
#     in the same session (IPv4 and IPv6).
#  I. a refused segment that acknowledges less of the server than the
#     gateway has seen (held up behind the client's egress backlog): the
#     client reads the server's reply to the command before it, then the
#     gateway's 550 5.7.4 (IPv4 and IPv6).
#
# How this fails when it should: with --no-offload (content never handed
# over) the counter checks fail; a tagger that passed the final "."
# would let the secure MAIL FROM through (B's checks fail); replies made
# from the segment's lines instead of its commands broke B (the content
# lines were taken for commands: no reply at all).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

MUTE_PORT=2525
policy_keys
trap 'rm -rf "$POL"' EXIT
cat >"$POL/p.json" <<-EOF
	{
		"policy_version": 1,
		"serial": 5,
		"expires": "2099-01-01T00:00:00Z",
		"secure_mode": {
			"sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ]
		},
		"domains": { "tls-required.test": { "require_tls": true, "subdomains": true } }
	}
EOF
policy_sign "$POL/p.json" 5 2099-01-01T00:00:00Z
world_e2e_setup --policy-key "$POL/pub.key" --policy "$POL/p.json" --ports 25,$MUTE_PORT
trap 'world_down >/dev/null 2>&1; rm -rf "$POL"' EXIT

SIZE=$((4 * 1024 * 1024))
MUTE=198.51.100.31 # a server that stops answering (tests/e2e/mute_server.py)

# make_wire ID TO: a message with dot-led lines every 20000 lines; its body
# (as delivered) in msg/<id>.body, the SMTP form (CRLF, dot-stuffed) in
# msg/<id>.wire.
make_wire() {
	local file=$WORLD_DIR/msg/${1%@*}
	mkdir -p "$WORLD_DIR/msg"
	world_make_message "$file" "$1" "$2" "content in the kernel" "$SIZE" || return 1
	awk 'NR % 20000 == 0 { print ".dot-led line " NR } { print }' "$file.body" >"$file.b2" &&
		mv "$file.b2" "$file.body"
	sed -n '1,/^$/p' "$file" | cat - "$file.body" | sed -e 's/^\./../' -e 's/$/\r/' >"$file.wire"
	sed -n '1,/^$/p' "$file" | cat - "$file.body" | sed -e 's/$/\r/' >"$file.raw"
}

# session V FROM2 SUBJECT2 [bdat|serial]: one session for IPv$V (see
# smtp_pipeline.py); sets id, out.
session() {
	local form=wire
	[ "${4:-}" = bdat ] && form=raw
	id=$(world_msgid)
	make_wire "$id" "$to" || return 1
	out=$(world_exec in "$WORLD_PY" tests/e2e/smtp_pipeline.py "$server" \
		sender@in.world.test "$2" "$to" "$WORLD_DIR/msg/${id%@*}.$form" "$3" ${4:-})
	diag "IPv$1${4:+ $4}: $(tr '\n' '|' <<<"$out")"
}
inbox() { grep -rlF "$1" "$WORLD_DIR/mx-plain/mail/inbox/new" >/dev/null 2>&1; }
neither() { ! inbox "$1" && ! inbox "$2"; }

for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30 to=user@plain.test; else server=2001:db8:2::30 to=user@plain6.test; fi

	# A. ordinary second sender.
	c0=$(world_stats 'j["kernel"]["content"]["bytes"]')
	q0=$(world_stats 'j["queue"]["bytes"]')
	h0=$(world_stats 'j["content"]["handed_over"] + j["kernel"]["content_switched"]["packets"]')
	second="second-$RANDOM$RANDOM"
	session $v other@in.world.test "$second" || { not_ok "IPv$v: could not make the message"; continue; }
	check "IPv$v: the first message was accepted (250 to its end of data)" grep -qE '^DOT1 250 ' <<<"$out"
	f=$(world_wait_delivered mx-plain "$id" 30)
	check "IPv$v: ... and arrived intact, dot-led lines included" world_intact "$f" "$id"
	check "IPv$v: the pipelined second message was accepted" grep -qE '^DOT2 250 ' <<<"$out"
	check "IPv$v: ... and arrived" wait_for 30 inbox "Subject: $second"
	c1=$(world_stats 'j["kernel"]["content"]["bytes"]')
	q1=$(world_stats 'j["queue"]["bytes"]')
	h1=$(world_stats 'j["content"]["handed_over"] + j["kernel"]["content_switched"]["packets"]')
	diag "IPv$v: content in the kernel +$((c1 - c0)) bytes, NFQUEUE +$((q1 - q0)) bytes, handed over (daemon or tagger) +$((h1 - h0)) times"
	check "IPv$v: the content was handed to the kernel" world_in_range $((h1 - h0)) 1
	check "IPv$v: and content passed there (the share is make bench's, not a test's)" \
		world_in_range $((c1 - c0)) 1
	check "IPv$v: kernel and NFQUEUE together carried the whole message" \
		world_in_range $((c1 - c0 + q1 - q0)) "$SIZE"

	# B. secure-mode second sender.
	second="refused-$RANDOM$RANDOM"
	session $v alice@secure.world.test "$second" || { not_ok "IPv$v: could not make the message"; continue; }
	check "IPv$v: the pipelined secure-mode MAIL FROM got the gateway's 550 5.7.4" \
		grep -qE '^MAIL2 550 5\.7\.4 tlsgate' <<<"$out"
	check "IPv$v: the first message, withheld with it, got a temporary 451 4.3.0" \
		grep -qE '^DOT1 451 4\.3\.0 ' <<<"$out"
	# RCPT and DATA are answered when they came in the refused segment;
	# when the client's TCP put them in the next one, that one meets the
	# blocked flow and the connection is closed after the 550.
	check "IPv$v: its RCPT and DATA got replies too (503, 554), or came after the close" \
		eval 'grep -qzE "RCPT2 503 .*DATA2 554 " <<<"$out" ||
			grep -A1 "^MAIL2 550 " <<<"$out" | tail -1 | grep -q "^closed "'
	sleep 1
	check "IPv$v: neither message reached the MX" neither "Message-ID: <$id>" "Subject: $second"
	check "IPv$v: a block event for the secure-mode sender" \
		[ "$(sql "select count(*) from events where kind='block' and rule='secure-sender-domain' and sender='secure.world.test' and mx='$server'")" -ge 1 ]

	# C. BDAT (RFC 3030): 1 MiB chunks, pipelined, then the second
	# transaction. The chunks pass in the kernel unscanned.
	c0=$(world_stats 'j["kernel"]["content"]["bytes"]')
	q0=$(world_stats 'j["queue"]["bytes"]')
	second="second-$RANDOM$RANDOM"
	session $v other@in.world.test "$second" bdat || { not_ok "IPv$v: could not make the message"; continue; }
	check "IPv$v BDAT: the last chunk was accepted" grep -qE '^DOT1 250 ' <<<"$out"
	f=$(world_wait_delivered mx-plain "$id" 30)
	check "IPv$v BDAT: the message arrived intact" world_intact "$f" "$id"
	check "IPv$v BDAT: the pipelined second message arrived" wait_for 30 inbox "Subject: $second"
	c1=$(world_stats 'j["kernel"]["content"]["bytes"]')
	q1=$(world_stats 'j["queue"]["bytes"]')
	diag "IPv$v BDAT: content in the kernel +$((c1 - c0)) bytes, NFQUEUE +$((q1 - q0)) bytes"
	check "IPv$v BDAT: chunk bytes passed in the kernel" world_in_range $((c1 - c0)) 1
	check "IPv$v BDAT: kernel and NFQUEUE together carried the whole message" \
		world_in_range $((c1 - c0 + q1 - q0)) "$SIZE"

	# D. BDAT, secure-mode second sender. The server still owes replies
	# to chunks forwarded before the refused MAIL FROM: the gateway's
	# replies wait for them, so that each answers its own command, and
	# follow them in the stream (I below).
	second="refused-$RANDOM$RANDOM"
	session $v alice@secure.world.test "$second" bdat || { not_ok "IPv$v: could not make the message"; continue; }
	check "IPv$v BDAT: the secure MAIL FROM got the gateway's 550 5.7.4" \
		grep -qE '^MAIL2 550 5\.7\.4 tlsgate' <<<"$out"
	chunks=$((($(stat -c %s "$WORLD_DIR/msg/${id%@*}.raw") + 1048575) / 1048576))
	# Each chunk whose end was forwarded before the withheld segment gets
	# the server's 250; those whose end is in that segment (the last one,
	# and the one before it when the segment reaches back that far: TCP's
	# segmentation decides) the gateway's 451, after them: one reply per
	# chunk, in order.
	codes=$(grep -E '^(BDAT[0-9]+|DOT1) ' <<<"$out" |
		sed -E 's/^[^ ]+ (250) .*/\1/; s/^[^ ]+ (451) 4\.3\.0 tlsgate.*/\1/' | tr '\n' ' ')
	check "IPv$v BDAT: the chunks got the server's 250s, then the gateway's 451s ($codes)" \
		eval '[[ "$codes" =~ ^250\ (250\ )*(451\ )*$ ]] && [ $(wc -w <<<"$codes") -eq "$chunks" ]'
	sleep 1
	check "IPv$v BDAT: nothing of the second transaction arrived" world_not inbox "Subject: $second"
done

# E. The server owes replies it never gives.
world_exec mx-plain ip addr add $MUTE/24 dev eth0
world_exec mx-plain "$WORLD_PY" tests/e2e/mute_server.py $MUTE $MUTE_PORT >/dev/null 2>&1 &
mute_pid=$!
trap 'kill $mute_pid 2>/dev/null; world_down >/dev/null 2>&1; rm -rf "$POL"' EXIT
wait_for 10 world_exec in "$WORLD_PY" -c "import socket; socket.create_connection(('$MUTE', $MUTE_PORT), 1)"
id=$(world_msgid)
to=user@plain.test
make_wire "$id" "$to"
t0=$SECONDS
out=$(SMTP_PORT=$MUTE_PORT world_exec in "$WORLD_PY" tests/e2e/smtp_pipeline.py "$MUTE" \
	sender@in.world.test alice@secure.world.test "$to" "$WORLD_DIR/msg/${id%@*}.raw" x bdat)
waited=$((SECONDS - t0))
diag "mute server, after ${waited} s: $(tr '\n' '|' <<<"$out")"
check "mute server: each unanswered chunk got the gateway's 451" \
	eval '[ "$(grep -cE "^(BDAT[0-9]+|DOT1) 451 " <<<"$out")" -ge 2 ]'
check "mute server: the secure-mode MAIL FROM got 550 5.7.4, in its place" \
	grep -qE '^MAIL2 550 5\.7\.4 tlsgate' <<<"$out"
check "mute server: RCPT and BDAT after it got 503 and 554" grep -qzE 'RCPT2 503 .*DOT2 554 ' <<<"$out"
check "mute server: the refusal waited for the server (>= 9 s)" world_in_range "$waited" 9 60
kill $mute_pid 2>/dev/null

diag "client segments dropped for a copy not yet read (replies.gap_drops): $(world_stats 'j["replies"]["gap_drops"]')"

# F. Command lines split across segments, IPv4 and IPv6. The tagger copies
# and passes client segments that hold no line to withhold, but never one
# that continues a line: the end of a secure-mode MAIL FROM sent alone (or
# just its CRLF) is withheld with it, and refused.
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30; else server=2001:db8:2::30; fi
	split() { world_exec in "$WORLD_PY" tests/e2e/split_command.py "$server" "$@"; }
	out=$(split 'MAIL FROM:<alice@sec' 'ure.world.test>\r\n')
	diag "IPv$v split in the address: $out"
	check "IPv$v: a secure MAIL FROM split in its address is refused" grep -qE '^550 5\.7\.4 tlsgate' <<<"$out"
	out=$(split 'MAIL FROM:<alice@secure.world.test>' '\r\n')
	diag "IPv$v CRLF alone: $out"
	check "IPv$v: a secure MAIL FROM whose CRLF comes alone is refused" grep -qE '^550 5\.7\.4 tlsgate' <<<"$out"
	out=$(split 'NOOP\r\n M' 'AIL FROM:<alice@secure.world.test>\r\n')
	diag "IPv$v leading space, split: $out"
	check "IPv$v: ' MAIL FROM' (Postfix reads MAIL) split after its M is refused" \
		grep -qE '^550 5\.7\.4 tlsgate' <<<"$out"
	# After a BDAT chunk the next command starts where the chunk ends, not
	# after a line end: no segment of the client is copied once BDAT is used.
	# Sent at once (no autocorking: two segments), the second reaches the
	# tagger while the first waits in the queue. Whether the daemon has read
	# its copy by then is a race: a clean-clone CI run of 837455a (the
	# daemon alone turning copies off, too late) lost it over IPv6 and the
	# MX answered 250. The tagger now ends command copies at the BDAT line.
	world_exec in sysctl -qw net.ipv4.tcp_autocorking=0
	out=$(world_exec in env SPLIT_DELAY=0 "$WORLD_PY" tests/e2e/split_command.py "$server" \
		'MAIL FROM:<bob@in.world.test>\r\nRCPT TO:<user@plain.test>\r\nBDAT 4 LAST\r\n' \
		'abcdMAIL FROM:<alice@secure.world.test>\r\n')
	diag "IPv$v after a BDAT chunk: $out"
	check "IPv$v: a secure MAIL FROM right after a BDAT chunk's last byte is refused" \
		grep -qE '^550 5\.7\.4 tlsgate' <<<"$out"
	out=$(split 'MAIL FROM:<bob@in.wo' 'rld.test>\r\n')
	diag "IPv$v ordinary, split: $out"
	check "IPv$v: an ordinary MAIL FROM split the same way is the server's 250" grep -qE '^250 ' <<<"$out"
done

# H. Nothing pipelined (as smtp-source and most clients talk): the kernel
# turns to content at the 354 the daemon awaits, or the daemon hands the
# content over when it reads the 354; a last segment that ends with the end
# of data passes in the kernel too. A secure-mode MAIL FROM in the next
# transaction is still judged, and refused.
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30 to=user@plain.test; else server=2001:db8:2::30 to=user@plain6.test; fi
	e0=$(world_stats 'j["kernel"]["content_ended"]["packets"]')
	id=$(world_msgid)
	SIZE=1000 make_wire "$id" "$to" || { not_ok "IPv$v: could not make the message"; continue; }
	second="refused-$RANDOM$RANDOM"
	# The message a second after the 354 (the daemon has handed the content
	# over by then, at the 354's wake-up or its tick), its last line and "."
	# a second after the rest: that segment ends with the end of data.
	out=$(world_exec in env SPLIT_END=1 "$WORLD_PY" tests/e2e/smtp_pipeline.py "$server" \
		sender@in.world.test alice@secure.world.test "$to" "$WORLD_DIR/msg/${id%@*}.wire" \
		"$second" serial)
	diag "IPv$v serial: $(tr '\n' '|' <<<"$out")"
	check "IPv$v serial: the message was accepted" grep -qE '^DOT1 250 ' <<<"$out"
	f=$(world_wait_delivered mx-plain "$id" 30)
	check "IPv$v serial: ... and arrived intact" world_intact "$f" "$id"
	check "IPv$v serial: the secure MAIL FROM after its end of data got the gateway's 550 5.7.4" \
		grep -qE '^MAIL2 550 5\.7\.4 tlsgate' <<<"$out"
	e1=$(world_stats 'j["kernel"]["content_ended"]["packets"]')
	check "IPv$v serial: its end of data passed in the kernel ($((e1 - e0)))" world_in_range $((e1 - e0)) 1
	sleep 1
	check "IPv$v serial: nothing of the refused transaction arrived" world_not inbox "Subject: $second"

	# 4 MiB, then an ordinary second transaction: both arrive intact. How
	# much of it, and how often its end, passes in the kernel varies (the
	# daemon's arming races the server's 354, see J; segments on two CPUs
	# return the content): make bench's figures, not a test's.
	e0=$(world_stats 'j["kernel"]["content_ended"]["packets"]')
	h0=$(world_stats 'j["content"]["handed_over"]')
	s0=$(world_stats 'j["kernel"]["content_switched"]["packets"]')
	second="second-$RANDOM$RANDOM"
	session $v bob@in.world.test "$second" serial || { not_ok "IPv$v: could not make the message"; continue; }
	f=$(world_wait_delivered mx-plain "$id" 30)
	check "IPv$v serial: the 4 MiB message arrived intact" world_intact "$f" "$id"
	check "IPv$v serial: ... and the second one after it" wait_for 30 inbox "Subject: $second"
	e1=$(world_stats 'j["kernel"]["content_ended"]["packets"]')
	h1=$(world_stats 'j["content"]["handed_over"]')
	diag "IPv$v serial: switched in the kernel +$(($(world_stats 'j["kernel"]["content_switched"]["packets"]') - s0)), handed over +$((h1 - h0)), end of data passed in the kernel +$((e1 - e0))"
done

# G. A new connection from the same address and port as one that was
# offloaded (its RST passed in the kernel, so the daemon never saw it
# close): the SYN is queued whatever the old entry says, and the new
# session is judged from the start. Before, it passed on the old PASS
# entry, and a secure-mode MAIL FROM reached the MX in plaintext.
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30; else server=2001:db8:2::30; fi
	r0=$(world_stats 'j["flows"]["reopened"]')
	out=$(world_exec in "$WORLD_PY" tests/e2e/reuse_port.py "$server" \
		bob@in.world.test alice@secure.world.test)
	diag "IPv$v same port twice: $(tr '\n' '|' <<<"$out")"
	check "IPv$v: the first session (ordinary sender) is the server's 250" \
		grep -qE '^250 ' <<<"$(sed -n 1p <<<"$out")"
	check "IPv$v: a secure MAIL FROM on the reused port is refused" \
		grep -qE '^550 5\.7\.4 tlsgate' <<<"$(sed -n 2p <<<"$out")"
	r1=$(world_stats 'j["flows"]["reopened"]')
	check "IPv$v: the daemon counts the reopened flow ($r0 -> $r1)" test "$r1" -gt "$r0"
done

offloaded_past() { [ "$(world_stats 'j["flows"]["offloaded_total"]')" -gt "$1" ]; }

# J. The kernel hands the content over at the 354 itself, where the daemon
# awaits it (the awaits map): the daemon's own handover would come only
# once it has read that 354. A Postfix listener that waits a second before
# its 354 (smtpd_data_restrictions = sleep 1) leaves no race to the daemon's
# arming: both transactions of a serial session switch in the kernel and
# the daemon hands nothing over; the messages arrive intact.
pf=$WORLD_DIR/mx-plain/etc
for a in 198.51.100.30 '[2001:db8:2::30]'; do
	postconf -c "$pf" -M "$a:$MUTE_PORT/inet=$a:$MUTE_PORT inet n - n - - smtpd -o smtpd_data_restrictions=sleep,1"
done
world_exec mx-plain postfix -c "$pf" reload >/dev/null 2>&1
_world_wait_port mx-plain 198.51.100.30 $MUTE_PORT
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30 to=user@plain.test; else server=2001:db8:2::30 to=user@plain6.test; fi
	s0=$(world_stats 'j["kernel"]["content_switched"]["packets"]')
	r0=$(world_stats 'j["kernel"]["rcpt_copied"]["packets"]')
	q0=$(world_stats 'j["kernel"]["quit_passed"]["packets"]')
	o0=$(world_stats 'j["flows"]["offloaded_total"]')
	h0=$(world_stats 'j["content"]["handed_over"]')
	c0=$(world_stats 'j["kernel"]["content"]["bytes"]')
	id=$(world_msgid)
	SIZE=20000 make_wire "$id" "$to" || { not_ok "IPv$v: could not make the message"; continue; }
	second="second-$RANDOM$RANDOM"
	out=$(SMTP_PORT=$MUTE_PORT world_exec in "$WORLD_PY" tests/e2e/smtp_pipeline.py "$server" \
		sender@in.world.test bob@in.world.test "$to" "$WORLD_DIR/msg/${id%@*}.wire" "$second" serial)
	diag "IPv$v slow 354: $(tr '\n' '|' <<<"$out")"
	f=$(world_wait_delivered mx-plain "$id" 30)
	check "IPv$v slow 354: the message arrived intact" world_intact "$f" "$id"
	check "IPv$v slow 354: ... and the second one after it" wait_for 30 inbox "Subject: $second"
	s1=$(world_stats 'j["kernel"]["content_switched"]["packets"]')
	r1=$(world_stats 'j["kernel"]["rcpt_copied"]["packets"]')
	q1=$(world_stats 'j["kernel"]["quit_passed"]["packets"]')
	# The daemon reads that QUIT's copy within a second (copies wake nobody).
	wait_for 5 offloaded_past "$o0"
	o1=$(world_stats 'j["flows"]["offloaded_total"]')
	h1=$(world_stats 'j["content"]["handed_over"]')
	c1=$(world_stats 'j["kernel"]["content"]["bytes"]')
	diag "IPv$v slow 354: switched in the kernel +$((s1 - s0)), handed over +$((h1 - h0)), content in the kernel +$((c1 - c0)) bytes, passed at QUIT +$((q1 - q0)), offloaded +$((o1 - o0))"
	check "IPv$v slow 354: the kernel switched to content at both 354s" [ $((s1 - s0)) -eq 2 ]
	check "IPv$v slow 354: both RCPT TO lines passed in the kernel" [ $((r1 - r0)) -eq 2 ]
	check "IPv$v slow 354: the QUIT after the kernel's end of data got the server's 221" \
		eval '[[ "$(tail -1 <<<"$out")" == "QUIT 221 "* ]]'
	check "IPv$v slow 354: ... and the daemon offloaded the flow at the QUIT (not the kernel)" \
		[ $((q1 - q0)) -eq 0 -a $((o1 - o0)) -eq 1 ]
	check "IPv$v slow 354: the daemon handed nothing over" [ $((h1 - h0)) -eq 0 ]
	check "IPv$v slow 354: content passed in the kernel" world_in_range $((c1 - c0)) 1
done

# K. RCPT TO judged in the kernel by its domain (rcpt_domains): one the
# policy may refuse is still withheld and refused by the gateway.
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30 to=user@plain.test; else server=2001:db8:2::30 to=user@plain6.test; fi
	r0=$(world_stats 'j["kernel"]["rcpt_copied"]["packets"]')
	out=$(world_exec in "$WORLD_PY" tests/e2e/serial_client.py "$server" \
		'MAIL FROM:<bob@in.world.test>' "RCPT TO:<$to>" 'RCPT TO:<carol@MX.TLS-required.test>')
	r1=$(world_stats 'j["kernel"]["rcpt_copied"]["packets"]')
	diag "IPv$v serial RCPT: $(tr '\n' '|' <<<"$out"), RCPT TO passed in the kernel +$((r1 - r0))"
	check "IPv$v serial RCPT: the ordinary recipient got the server's 250" \
		eval '[[ "$(sed -n 2p <<<"$out")" == "250 "* ]]'
	check "IPv$v serial RCPT: ... and its RCPT TO passed in the kernel" [ $((r1 - r0)) -eq 1 ]
	check "IPv$v serial RCPT: the require_tls recipient got the gateway's 451 4.7.4" \
		eval '[[ "$(sed -n 3p <<<"$out")" == "451 4.7.4 tlsgate"* ]]'
	check "IPv$v serial RCPT: a block event names the recipient domain" \
		[ "$(sql "select count(*) from events where kind='block' and rule='policy-require-tls' and recipient='mx.tls-required.test' and mx='$server'")" -ge 1 ]
done
# ... and after a policy apply, the kernel's domains are the new policy's:
# a domain it adds is refused at once, one it drops passes in the kernel.
sed -e 's/"serial": 5/"serial": 6/' -e 's/tls-required\.test/late-required.test/' \
	"$POL/p.json" >"$POL/p6.json"
policy_sign "$POL/p6.json" 6 2099-01-01T00:00:00Z
ans=$(world_ctl policy apply "$POL/p6.json" 2>&1)
diag "policy apply: $ans"
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30 to=user@plain.test; else server=2001:db8:2::30 to=user@plain6.test; fi
	r0=$(world_stats 'j["kernel"]["rcpt_copied"]["packets"]')
	out=$(world_exec in "$WORLD_PY" tests/e2e/serial_client.py "$server" \
		'MAIL FROM:<bob@in.world.test>' 'RCPT TO:<carol@tls-required.test>' \
		'RCPT TO:<dave@late-required.test>')
	r1=$(world_stats 'j["kernel"]["rcpt_copied"]["packets"]')
	diag "IPv$v new policy: $(tr '\n' '|' <<<"$out"), RCPT TO passed in the kernel +$((r1 - r0))"
	# (the server answers it: 454 relay access denied, not the gateway)
	check "IPv$v new policy: the domain it dropped passes in the kernel to the server" \
		eval '[[ "$(sed -n 2p <<<"$out")" =~ ^[245][0-9][0-9]\  &&
			"$(sed -n 2p <<<"$out")" != *tlsgate* && $((r1 - r0)) -eq 1 ]]'
	check "IPv$v new policy: the domain it added gets the gateway's 451 4.7.4" \
		eval '[[ "$(sed -n 3p <<<"$out")" == "451 4.7.4 tlsgate"* ]]'
done

# L. A policy applied while a RCPT TO's copy is unread: the RCPT TO the
# kernel passed under the policy in force is judged under that policy (the
# daemon reads its copies before applying), not under the new one, which
# would reset the session (replies.copied_refused). Nothing may read the
# ring between the RCPT TO and the apply: no stats in between. Without the
# read before the apply this fails in most runs, not all: the daemon's
# once-a-second read of the ring may come first (it did for one of the two
# families in a mutation run).
lines_at_least() { [ "$(wc -l <"$1")" -ge "$2" ]; }
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30 serial=7; else server=2001:db8:2::30 serial=8; fi
	dom=later$v-required.test
	sed -e "s/\"serial\": 6/\"serial\": $serial/" -e "s/late-required\.test/$dom/" \
		"$POL/p6.json" >"$POL/p$serial.json"
	policy_sign "$POL/p$serial.json" "$serial" 2099-01-01T00:00:00Z
	flag=$WORLD_DIR/applied$v
	cr0=$(world_stats 'j["replies"]["copied_refused"]')
	world_exec in "$WORLD_PY" tests/e2e/serial_client.py "$server" 'MAIL FROM:<bob@in.world.test>' \
		"RCPT TO:<erin@$dom>" "@wait $flag" 'NOOP' "RCPT TO:<fred@$dom>" >"$WORLD_DIR/apply$v.out" &
	cpid=$!
	wait_for 10 lines_at_least "$WORLD_DIR/apply$v.out" 2
	ans=$(world_ctl policy apply "$POL/p$serial.json" 2>&1)
	touch "$flag"
	wait "$cpid"
	out=$(cat "$WORLD_DIR/apply$v.out")
	cr1=$(world_stats 'j["replies"]["copied_refused"]')
	diag "IPv$v apply during a session: $(tr '\n' '|' <<<"$out") apply: $ans, copied_refused +$((cr1 - cr0))"
	check "IPv$v apply during a session: the RCPT TO before it got the server's reply" \
		eval '[[ "$(sed -n 2p <<<"$out")" =~ ^[245][0-9][0-9]\  && "$(sed -n 2p <<<"$out")" != *tlsgate* ]]'
	check "IPv$v apply during a session: the session lives on (NOOP: 250)" \
		eval '[[ "$(sed -n 4p <<<"$out")" == "250 "* ]]'
	check "IPv$v apply during a session: ... and the new policy refuses that domain (451 4.7.4)" \
		eval '[[ "$(sed -n 5p <<<"$out")" == "451 4.7.4 tlsgate"* ]]'
	check "IPv$v apply during a session: no copy was judged under the new policy" [ "$cr1" -eq "$cr0" ]
done

# I. A refused segment that acknowledges less of the server's stream than
# the gateway has seen: sent before the reply to the command ahead of it
# arrived, it is held up behind the client's own egress backlog (a tbf
# qdisc and UDP datagrams, see stale_ack.py) and reaches the gateway after
# that reply. The refusal must follow the reply, not overwrite it: the
# client reads the server's 250 to NOOP, then the gateway's 550 5.7.4.
world_exec in tc qdisc add dev eth0 root tbf rate 1mbit burst 4kb latency 2s
for v in 4 6; do
	if [ "$v" = 4 ]; then server=198.51.100.30; else server=2001:db8:2::30; fi
	out=$(world_exec in "$WORLD_PY" tests/e2e/stale_ack.py "$server" 'NOOP\r\n' \
		'MAIL FROM:<alice@secure.world.test>\r\n')
	diag "IPv$v stale ack: $(tr '\n' '|' <<<"$out")"
	check "IPv$v: with a stale ack, the server's 250 to NOOP, then the gateway's 550 5.7.4" \
		eval '{ read -r a; read -r b; read -r c; } <<<"$out";
		[[ $a == "250 "* && $b == "550 5.7.4 tlsgate"* && $c == closed ]]'
done
world_exec in tc qdisc del dev eth0 root

done_testing
