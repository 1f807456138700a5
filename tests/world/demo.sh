#!/bin/bash
# make demo: bring up the test world, start the gateway, send a few messages
# (STARTTLS and plaintext, IPv4 and IPv6), show what tlsgated saw, then keep
# everything running until Ctrl-C and tear it down. DEMO_SECONDS=N ends the
# demo by itself after N seconds (for CI, where stdin is not a terminal).
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/world/lib.sh
. tests/world/lib.sh

if [ -t 1 ]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi

[ "$(id -u)" = 0 ] || { echo "demo: run as root (network namespaces, BPF)" >&2; exit 1; }
for b in "$WORLD_TLSGATED" "$WORLD_TLSGATECTL"; do
	[ -x "$b" ] || { echo "demo: $b missing: run make" >&2; exit 1; }
done
if [ -n "${DEMO_SECONDS:-}" ] && ! [[ $DEMO_SECONDS =~ ^[0-9]+$ ]]; then
	echo "demo: DEMO_SECONDS must be a number of seconds" >&2
	exit 2
fi

world_trap
say "Building the test world (network namespaces, three real Postfix instances)"
world_up || exit 1
say "DNS with DNSSEC: a signed test root, NSD, a validating unbound"
. "$(dirname "$0")/dns.sh"
dns_up || exit 1
# Two of the DNS world's domains, routed like the others (by address):
# dane-ee.test (MX mx-ee.test, TLSA 3 1 1 -> mx-tls) and nostarttls.test
# (MX -> mx-plain). The MTA's own MX lookups, seen on the wire, tell the
# gateway which MX and domain an address belongs to.
printf 'dane-ee.test\tsmtp:[198.51.100.20]\nnostarttls.test\tsmtp:[198.51.100.30]\n' \
	>>"$WORLD_DIR/in/etc/transport"
world_exec in postfix -c "$WORLD_DIR/in/etc" reload >/dev/null 2>&1
world_exec mx-tls postconf -c "$WORLD_DIR/mx-tls/etc" -e 'virtual_mailbox_domains = tls.test tls6.test dane-ee.test' &&
	world_exec mx-tls postfix -c "$WORLD_DIR/mx-tls/etc" reload >/dev/null 2>&1
world_exec mx-plain postconf -c "$WORLD_DIR/mx-plain/etc" -e 'virtual_mailbox_domains = plain.test plain6.test nostarttls.test' &&
	world_exec mx-plain postfix -c "$WORLD_DIR/mx-plain/etc" reload >/dev/null 2>&1
cat <<EOF
   in        192.0.2.10   2001:db8:1::10   sending Postfix
   gw        192.0.2.1    2001:db8:1::1    tlsgated on "inside" and "outside"
             198.51.100.1 2001:db8:2::1
   mx-tls    198.51.100.20 2001:db8:2::20  Postfix with STARTTLS (test CA)
   mx-plain  198.51.100.30 2001:db8:2::30  Postfix without STARTTLS
EOF

say "Signing a policy: senders @secure.world.test are in secure mode"
POL=$WORLD_DIR/demo-policy
mkdir -p "$POL"
cat >"$POL/policy.json" <<EOF
{
	"policy_version": 1,
	"serial": 1,
	"expires": "2099-01-01T00:00:00Z",
	"comment": "demo: mail from secure.world.test must never travel unencrypted",
	"secure_mode": {
		"sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ]
	}
}
EOF
minisign -G -W -p "$POL/pub.key" -s "$POL/sec.key" >/dev/null 2>&1 &&
	minisign -S -s "$POL/sec.key" -m "$POL/policy.json" \
		-t "serial:1 expires:2099-01-01T00:00:00Z" >/dev/null 2>&1 ||
	{ echo "demo: minisign failed" >&2; exit 1; }
echo "   key $POL/pub.key, policy $POL/policy.json (+ .minisig)"

say "Starting tlsgated in the gateway"
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/policy.json" \
	--probe-resolver 203.0.113.10 --probe-trust-anchor "$DNS_DIR/root.ds" \
	--probe-arg=--transparent-zone --probe-arg=test. || exit 1
echo "   pid $(world_gw_pid), log $WORLD_DIR/gw/tlsgated.log"

# The status page listens on 127.0.0.1:8025 inside the gateway namespace;
# forward the host's loopback to it so a browser on this machine sees it.
WEB_PORT=${DEMO_WEB_PORT:-8025}
socat "TCP-LISTEN:$WEB_PORT,bind=127.0.0.1,reuseaddr,fork" \
	"EXEC:nsenter --net=/run/netns/$(world_ns gw) socat STDIO TCP\:127.0.0.1\:8025" \
	2>"$WORLD_DIR/socat.log" &
SOCAT_PID=$!
TRAFFIC_PID=
sleep 0.3
kill -0 "$SOCAT_PID" 2>/dev/null ||
	echo "demo: cannot listen on 127.0.0.1:$WEB_PORT (in use?); set DEMO_WEB_PORT=N" >&2
trap 'kill $SOCAT_PID $TRAFFIC_PID 2>/dev/null; world_down >/dev/null 2>&1' EXIT

say "The sending MTA resolves its recipients' MX (queries cross the gateway)"
for q in "MX dane-ee.test" "A mx-ee.test" "MX nostarttls.test" "A mx-plain.test"; do
	# shellcheck disable=SC2086
	world_exec in dig +time=3 +tries=2 +short @203.0.113.10 $q | sed "s/^/   $q -> /"
done
sleep 3 # the gateway has each learned domain probed (DNSSEC, STARTTLS, DANE)

say "Sending mail from in"
failed=0
send() {
	local to=$1 subject=$2 size=${3:-0} node=${4:-} id f
	[ -n "$node" ] || node=$(world_node_for "$to")
	id=$(world_send "$to" "$subject" "$size") || { failed=1; return; }
	if f=$(world_wait_delivered "$node" "$id" 60); then
		printf '   %-22s %-34s delivered to %s, %s\n' "$to" "$subject" "$node" \
			"$(grep -m1 -oE 'using TLSv1\.[0-3] with cipher [A-Z0-9_-]+|with ESMTP id' "$f" |
				sed 's/with ESMTP id/no TLS/')"
	else
		printf '   %-22s %-34s NOT delivered\n' "$to" "$subject"
		failed=1
	fi
}
send user@tls.test "STARTTLS, IPv4, 5 MB" $((5 * 1024 * 1024))
send user@tls6.test "STARTTLS, IPv6"
send user@plain.test "plaintext, IPv4"
send user@plain6.test "plaintext, IPv6"
send user@dane-ee.test "DANE (TLSA 3 1 1), IPv4" 0 mx-tls
send user@nostarttls.test "no STARTTLS, IPv4" 0 mx-plain

say "A secure-mode sender to the MX without STARTTLS: refused, bounced"
sid=$(world_msgid)
mkdir -p "$WORLD_DIR/msg"
world_make_message "$WORLD_DIR/msg/secure" "$sid" user@plain.test "secure mode"
world_inject "$WORLD_DIR/msg/secure" alice@secure.world.test user@plain.test
pat='to=<user@plain.test>.*status=bounced.*said: '
for i in $(seq 1 50); do grep -q "$pat" "$WORLD_DIR/in/maillog" && break; sleep 0.2; done
grep "$pat" "$WORLD_DIR/in/maillog" | tail -1 | sed 's/.*said: /   the sending Postfix bounced it: /'

say "What the gateway saw: tlsgatectl stats"
world_ctl stats
say "tlsgatectl flows"
world_ctl flows

cat <<EOF

The STARTTLS flows were offloaded after the handshake (verdict pass): their
bulk stayed in the kernel. The plaintext flows were inspected to their end:
with secure-mode senders in the policy, any later MAIL FROM could be one
(without such a policy they are offloaded at MAIL FROM). The secure-mode
sender's MAIL FROM was withheld and answered with 550 5.7.4.

Status page (this machine's browser):  http://127.0.0.1:$WEB_PORT/
   (the demo keeps sending a message every 20 s so the page moves)
   dane-ee.test shows "DANE ok" and nostarttls.test "no TLS": the gateway
   learned them from the MTA's MX lookups and had them probed; plain.test
   "no TLS" from RCPT TO in the clear; tls.test stays "TLS?": it is routed
   by address without DNS and its RCPT TO travels encrypted.

Poke at the world from another shell:
   export WORLD_ID=$WORLD_ID
   tests/world/world.sh status
   tests/world/world.sh ctl flows
   tests/world/world.sh send user@tls.test "hello"
   tests/world/world.sh exec in bash
Logs: $WORLD_DIR/*/maillog, $WORLD_DIR/gw/tlsgated.log
EOF
[ "$failed" -eq 0 ] || echo "demo: some messages were not delivered (see above)" >&2

# Background traffic for the page: TLS and plaintext, IPv4 and IPv6.
(
	n=0
	while :; do
		sleep 20
		n=$((n + 1))
		case $((n % 4)) in
		0) world_send user@tls.test "demo traffic $n" ;;
		1) world_send user@plain.test "demo traffic $n" ;;
		2) world_send user@tls6.test "demo traffic $n" ;;
		3) world_send user@plain6.test "demo traffic $n" ;;
		esac
	done
) >/dev/null 2>&1 &
TRAFFIC_PID=$!

if [ -n "${DEMO_SECONDS:-}" ]; then
	say "Running for ${DEMO_SECONDS}s (DEMO_SECONDS), then tearing down"
	sleep "$DEMO_SECONDS" &
	wait $!
else
	say "Running; press Ctrl-C to tear it down"
	# A child sleep, so the INT trap runs at once.
	while :; do
		sleep 3600 &
		wait $!
	done
fi
world_gw_stop
exit "$failed"
