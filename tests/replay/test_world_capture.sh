#!/bin/bash
# Real captures from the test world, replayed and checked against the MTAs.
#
# A world without tlsgated (the gateway forwards), tcpdump on the gateway's
# inside interface, and real Postfix mail, one message at a time, over IPv4
# and IPv6: TLS 1.3 (the default), TLS 1.2 (the sender's "smtp12" transport
# disables TLSv1.3), plaintext (mx-plain offers no STARTTLS), and refused
# STARTTLS (a fourth host, mx-refuse, whose responder offers STARTTLS and
# answers 454). The capture goes through tlsgate-replay --json and every
# session is checked against what the MTAs logged: the sender's "TLS
# connection established to ...: TLSvX with cipher Y" and the receiver's
# "... from ...", the EHLO name in the delivered message's Received header,
# the envelope in the qmgr/delivery lines, the refusal the sender logs, and
# the certificate the receiver holds (TLS 1.2). TAP output.
#
# Needs root. REPLAY_WORLD_KEEP=DIR keeps the capture and the logs in DIR.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
REPLAY=${TLSGATE_REPLAY:-$WORLD_BUILD/tlsgate-replay}

[ "$(id -u)" = 0 ] || { echo "ok 1 # SKIP needs root (network namespaces)"; echo "1..1"; exit 0; }
[ -x "$REPLAY" ] || { echo "Bail out! $REPLAY missing: run make"; exit 1; }
for b in tcpdump tshark openssl; do
	command -v $b >/dev/null || { echo "Bail out! $b missing (tests/lib/deps.sh)"; exit 1; }
done

REFUSE4=198.51.100.40
REFUSE6=2001:db8:2::40
TCPDUMP_PID=
REFUSER_PID=
cleanup() {
	[ -z "$TCPDUMP_PID" ] || kill "$TCPDUMP_PID" 2>/dev/null
	[ -z "$REFUSER_PID" ] || kill "$REFUSER_PID" 2>/dev/null
	if [ -n "${REPLAY_WORLD_KEEP:-}" ] && [ -n "${WORLD_DIR:-}" ] && [ -d "$WORLD_DIR" ]; then
		mkdir -p "$REPLAY_WORLD_KEEP" &&
			cp -r "$WORLD_DIR/capture" "$WORLD_DIR/in/maillog" "$REPLAY_WORLD_KEEP/" 2>/dev/null
		for n in mx-tls mx-plain; do
			cp "$WORLD_DIR/$n/maillog" "$REPLAY_WORLD_KEEP/$n.maillog" 2>/dev/null
			cp -r "$WORLD_DIR/$n/mail" "$REPLAY_WORLD_KEEP/$n.mail" 2>/dev/null
		done
	fi
	world_down >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
world_up || { echo "Bail out! world_up failed"; exit 1; }
diag "world $WORLD_ID ($WORLD_DIR)"
CAP=$WORLD_DIR/capture
mkdir -p "$CAP"

# mx-refuse: a fourth host on the switch. Its namespace carries the world's
# prefix, so world_down removes it (and kills what runs in it) as well.
refuse_up() {
	ip netns add "$(world_ns mx-refuse)" &&
		ip -n "$(world_ns mx-refuse)" link set lo up &&
		world_exec mx-refuse sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 &&
		_world_link mx-refuse eth0 sw p-mxrefuse &&
		ip -n "$(world_ns sw)" link set p-mxrefuse master br0 &&
		_world_addr mx-refuse eth0 $REFUSE4/24 $REFUSE6/64 &&
		ip -n "$(world_ns mx-refuse)" route add default via 198.51.100.1 &&
		ip -n "$(world_ns mx-refuse)" -6 route add default via 2001:db8:2::1 || return 1
	# nsenter execs the command: $! is the responder itself.
	nsenter --net="/run/netns/$(world_ns mx-refuse)" python3 tests/replay/starttls_refuser.py \
		"$CAP/mx-refuse.log" >"$CAP/mx-refuse.err" 2>&1 &
	REFUSER_PID=$!
	_world_wait_port mx-refuse $REFUSE4 25
}
refuse_up || { echo "Bail out! could not start mx-refuse"; exit 1; }

# The sender: transports that cannot speak TLS 1.3 ("smtp12" with a
# certificate, "smtpadh" as Postfix chooses by default at level "may":
# anonymous DH), routes by full address (transport_maps looks up
# user@domain first) to them and by domain to mx-refuse, and the SMTP
# conversation with every receiver in its log (debug_peer_list), so the
# dialog as the sender saw it can be compared with the replay.
sender_routes() {
	local d=$WORLD_DIR/in/etc no13='!SSLv2,!SSLv3,!TLSv1,!TLSv1.1,!TLSv1.3'
	cat >>"$d/master.cf" <<-EOF || return 1
		smtp12    unix  -       -       n       -       -       smtp
		  -o smtp_tls_protocols=$no13 -o smtp_tls_exclude_ciphers=aNULL
		smtpadh   unix  -       -       n       -       -       smtp
		  -o smtp_tls_protocols=$no13
	EOF
	cat >>"$d/transport" <<-EOF || return 1
		tls12@tls.test	smtp12:[198.51.100.20]
		tls12@tls6.test	smtp12:[2001:db8:2::20]
		adh@tls.test	smtpadh:[198.51.100.20]
		refused.test	smtp:[$REFUSE4]
		refused6.test	smtp:[$REFUSE6]
	EOF
	postconf -c "$d" -e "debug_peer_list = 198.51.100.0/24, [2001:db8:2::]/64" \
		"debug_peer_level = 2" || return 1
	world_exec in postfix -c "$d" reload >/dev/null 2>&1
}
sender_routes || { echo "Bail out! could not reconfigure the sender"; exit 1; }
sleep 1

nsenter --net="/run/netns/$(world_ns gw)" tcpdump -i inside --immediate-mode -U -Z root -w "$CAP/world.pcap" \
	'tcp port 25' 2>"$CAP/tcpdump.err" &
TCPDUMP_PID=$!
for i in $(seq 1 50); do grep -q "listening on" "$CAP/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$CAP/tcpdump.err" || { echo "Bail out! tcpdump did not start"; cat "$CAP/tcpdump.err"; exit 1; }

# refuse_wait MSGID [TIMEOUT]: until mx-refuse has queued the message.
refuse_wait() {
	local end=$((SECONDS + ${2:-30}))
	while [ "$SECONDS" -lt "$end" ]; do
		grep -qF "message-id=<$1>" "$CAP/mx-refuse.log" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# One message at a time, so every connection in the capture belongs to the
# message whose time window holds its SYN: cases.tsv has
# name, recipient, server address, receiving node, Message-ID, start, end,
# the delivered file ("-" for mx-refuse, whose log is its record).
: >"$CAP/cases.tsv"
send_case() {
	local name=$1 rcpt=$2 addr=$3 node=$4 id t0 t1 ok=0 file=-
	t0=$(date +%s.%N)
	id=$(world_send "$rcpt" "replay $name") || { not_ok "$name: message submitted"; return; }
	if [ "$node" = mx-refuse ]; then
		refuse_wait "$id" 30 && ok=1
	else
		file=$(world_wait_delivered "$node" "$id" 30) && ok=1
	fi
	check "$name: delivered to $node ($rcpt)" [ $ok = 1 ]
	# Let the sender log the delivery and close (QUIT, FIN) before the next.
	for i in $(seq 1 50); do
		grep -q "to=<$rcpt>.*status=sent" "$WORLD_DIR/in/maillog" 2>/dev/null && break
		sleep 0.1
	done
	sleep 0.5
	t1=$(date +%s.%N)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rcpt" "$addr" "$node" "$id" "$t0" "$t1" "${file:--}" \
		>>"$CAP/cases.tsv"
}
send_case tls13-v4 user@tls.test 198.51.100.20 mx-tls
send_case tls13-v6 user@tls6.test 2001:db8:2::20 mx-tls
send_case tls12-v4 tls12@tls.test 198.51.100.20 mx-tls
send_case tls12-v6 tls12@tls6.test 2001:db8:2::20 mx-tls
send_case tls12adh-v4 adh@tls.test 198.51.100.20 mx-tls
send_case plain-v4 user@plain.test 198.51.100.30 mx-plain
send_case plain-v6 user@plain6.test 2001:db8:2::30 mx-plain
send_case refused-v4 user@refused.test $REFUSE4 mx-refuse
send_case refused-v6 user@refused6.test $REFUSE6 mx-refuse

# tcpdump drops what it has not yet read from the kernel when it is stopped:
# stop it only once the file has stopped growing.
last=-1
for i in $(seq 1 30); do
	size=$(stat -c %s "$CAP/world.pcap" 2>/dev/null || echo 0)
	[ "$size" = "$last" ] && break
	last=$size
	sleep 0.5
done
kill -TERM "$TCPDUMP_PID"
wait "$TCPDUMP_PID" 2>/dev/null
TCPDUMP_PID=
diag "$(tail -3 "$CAP/tcpdump.err" | tr '\n' ' ')"

"$REPLAY" --json "$CAP/world.pcap" >"$CAP/replay.json" 2>"$CAP/replay.err"
rc=$?
check "tlsgate-replay reads the capture (exit $rc)" test $rc = 0 -a -s "$CAP/replay.json"

# The receiver's certificate as mx-tls holds it (what TLS 1.2 shows).
openssl x509 -in "$WORLD_DIR/ca/mx-tls.pem" -outform DER -out "$CAP/mx-tls.der"
openssl x509 -in "$WORLD_DIR/ca/mx-tls.pem" -noout -pubkey | openssl pkey -pubin -outform DER -out "$CAP/mx-tls.spki"

while IFS= read -r line; do
	case $line in
	"PASS "*) ok "${line#PASS }" ;;
	"FAIL "*) not_ok "${line#FAIL }" ;;
	*) echo "$line" ;;
	esac
done < <(python3 tests/replay/world_compare.py "$CAP" "$WORLD_DIR" 2>&1)
done_testing
