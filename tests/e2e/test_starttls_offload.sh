#!/bin/bash
# End-to-end 2: a 20 MB message over STARTTLS to mx-tls through tlsgated.
# It must arrive intact, the receiving Postfix must have used TLS, and the
# daemon must have seen only the dialog and the handshake: the flow's packets
# through NFQUEUE are few (< 100) while its kernel-only (PASS) bytes cover the
# message. A small IPv6 message checks the same offload for IPv6.
#
# How this fails when it should: with offload broken (e.g. TLSGATED_ARGS=
# --no-offload, which inspects everything and never writes PASS) the flow's
# verdict stays "inspect", thousands of packets go through the queue and the
# kernel pass bytes stay 0: the offload checks fail (verified by running it
# so); the delivery checks still pass, as they should.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh

SIZE=$((20 * 1024 * 1024))

world_e2e_setup

pass0=$(world_stats 'j["kernel"]["pass"]["bytes"]')
qb0=$(world_stats 'j["queue"]["bytes"]')
t0=$SECONDS
id=$(world_send user@tls.test "20 MB over STARTTLS" "$SIZE")
check "20 MB message submitted to the sender's Postfix" [ -n "$id" ]
f=$(world_wait_delivered mx-tls "$id" 180)
check "delivered to mx-tls ($((SECONDS - t0)) s)" [ -n "$f" ]
check "body intact (sha256 of $SIZE bytes)" world_intact "$f" "$id"
check "mx-tls received it over TLS (Received: header)" \
	grep -qE '^[[:space:]]+\(using TLSv1\.[23] with cipher' "${f:-/dev/null}"
check "mx-tls logged the TLS connection from the sender" \
	grep -qE 'smtpd\[[0-9]+\]: (Anonymous|Trusted|Untrusted|Verified) TLS connection established from unknown\[192\.0\.2\.10\]' \
	"$WORLD_DIR/mx-tls/maillog"

server=198.51.100.20:25
verdict=$(world_flow "$server" 'j["verdict"]')
queued=$(world_flow "$server" 'j["queued_packets"]')
qbytes=$(world_flow "$server" 'j["queued_bytes"]')
kbytes=$(world_flow "$server" 'j["kernel_bytes"]')
kpkts=$(world_flow "$server" 'j["kernel_packets"]')
tlsv=$(world_flow "$server" 'j["tls_version"]')
diag "flow -> $server: verdict=$verdict queued=$queued pkts/$qbytes bytes kernel=$kpkts pkts/$kbytes bytes tls_version=$tlsv"
check "the flow was offloaded (verdict pass)" [ "$verdict" = pass ]
check "few packets went through NFQUEUE (0 < $queued < 100)" world_in_range "$queued" 1 100
check "the kernel-only bytes of the flow cover the message ($kbytes >= $SIZE)" \
	world_in_range "$kbytes" "$SIZE"
check "the daemon read the negotiated TLS version from the handshake ($tlsv)" \
	grep -qE "^0x030[1-4]$" <<<"$tlsv"
pass1=$(world_stats 'j["kernel"]["pass"]["bytes"]')
qb1=$(world_stats 'j["queue"]["bytes"]')
diag "totals: kernel pass +$((pass1 - pass0)) bytes, queue +$((qb1 - qb0)) bytes"
check "kernel pass counter grew by the message size" [ $((pass1 - pass0)) -ge "$SIZE" ]
check "queue bytes are a small fraction of it (< 1 MB)" [ $((qb1 - qb0)) -lt 1048576 ]

# IPv6: the same offload, with a 1 MB message.
id6=$(world_send user@tls6.test "1 MB over STARTTLS, IPv6" 1048576)
f6=$(world_wait_delivered mx-tls "$id6" 60)
check "IPv6: delivered intact over TLS" world_intact "$f6" "$id6"
server6="[2001:db8:2::20]:25"
verdict6=$(world_flow "$server6" 'j["verdict"]')
queued6=$(world_flow "$server6" 'j["queued_packets"]')
kbytes6=$(world_flow "$server6" 'j["kernel_bytes"]')
diag "IPv6 flow -> $server6: verdict=$verdict6 queued=$queued6 kernel_bytes=$kbytes6"
check "IPv6: offloaded (verdict pass)" [ "$verdict6" = pass ]
check "IPv6: few packets through NFQUEUE" world_in_range "$queued6" 1 100
check "IPv6: kernel-only bytes cover the message" world_in_range "$kbytes6" 1048576

done_testing
