#!/bin/bash
# End-to-end: an MX identity that cannot be forged (issue 18, items 3, 4).
#
# A requirement established from validated data ends only by validated data
# or an operator (DESIGN.md, threat model rule 4): not by one forged DNS
# packet, not by an address seen without its name.
#
# The sender routes tls.test to the address literal 198.51.100.20 (mx-tls),
# so the gateway learns the name as the daemon's own validated resolution
# (tlsgate-probe) would write it: addr_mx 198.51.100.20 -> mx-tls.world.test,
# secure, short TTL.
#
#  1. history: one delivery over TLS; the history is kept under the name.
#  2. a forged DNS answer from the outside (UDP from 198.51.100.53 port 53
#     to the sender, mapping tls.test to fresh-mx.attacker.test at
#     198.51.100.20, TTL one day): the daemon reads it and learns nothing.
#     Then the worst such a packet could ever have done (an unvalidated
#     mapping to a fresh name with the newest expiry, written directly into
#     addr_mx): a STARTTLS-stripped delivery is still deferred with 451
#     4.7.4 (tls-history), nothing delivered, the lock goes to the name with
#     history, not to the fresh one.
#  3. every mapping of the address expired: the stripped delivery is still
#     deferred, by the lock, under the last known name; a secure-mode
#     sender's message is deferred (451), not bounced (550).
#  4. the stripper gone, tlsgatectl history release of the name: delivered.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

secure_world_setup

IN=$WORLD_DIR/in
MX=198.51.100.20
NAME=mx-tls.world.test
FRESH=fresh-mx.attacker.test
TO=user@tls.test
now() { date +%s; }
deferrals() { grep -c "$1: to=<$2>.*status=deferred" "$IN/maillog"; }
# after_store_change: the daemon caches a destination for 2 s.
after_store_change() { sleep 2.5; }

MITM_PID='' RULE=(PREROUTING -i eth0 -p tcp -d $MX --dport 25 -j REDIRECT --to-ports 10025)
mitm_on() {
	world_exec mx-tls "$WORLD_PY" tests/e2e/starttls_stripper.py $MX 10025 $MX 25 \
		>"$WORLD_DIR/mitm.out" 2>"$WORLD_DIR/mitm.log" &
	MITM_PID=$!
	wait_for 5 grep -q ready "$WORLD_DIR/mitm.out" && world_exec mx-tls iptables -t nat -A "${RULE[@]}"
}
mitm_off() {
	world_exec mx-tls iptables -t nat -D "${RULE[@]}" 2>/dev/null
	if [ -n "$MITM_PID" ]; then
		kill "$MITM_PID" 2>/dev/null
		wait "$MITM_PID" 2>/dev/null
	fi
	MITM_PID=''
	true
}
world_at_exit mitm_off

# 1. The validated name, then TLS history through a normal delivery.
sql "INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES('$MX', '$NAME', 'tls.test', 1, $(($(now) + 60)))"
# ... and its DANE state, as the probe would record it (no TLSA: "tls"):
# without one, the gateway holds STARTTLS to a named MX until its probe of
# the MX ends, and this world has no DNS for that probe.
sql "INSERT INTO probe_results(time, domain, class, mx, addr, verdict) VALUES($(now), 'tls.test', 'tls', '$NAME', '$MX', 'tls')"
id=$(world_send $TO "history under the name")
f=$(world_wait_delivered mx-tls "$id" 30)
check "1. first mail delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
sleep 0.5
check "1. the store has TLS history under $NAME (level tls)" \
	[ "$(sql "select level from tls_history where mx='$NAME'")" = 2 ]
diag "tls_history: $(sql "select mx, level, tls_count from tls_history" | tr '\n' ' ')"

# 2a. One forged DNS answer from the outside.
forge() {
	world_exec mx-plain ip addr add 198.51.100.53/24 dev eth0 2>/dev/null
	world_exec mx-plain "$WORLD_PY" - "$FRESH" <<-'PY'
		import socket, struct, sys
		fresh = sys.argv[1]
		def name(n):
		    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
		hdr = struct.pack(">HHHHHH", 0x5151, 0x8180, 1, 2, 0, 0)
		q = name("tls.test") + struct.pack(">HH", 15, 1)
		rd = struct.pack(">H", 10) + name(fresh)
		mx = name("tls.test") + struct.pack(">HHIH", 15, 1, 86400, len(rd)) + rd
		a = name(fresh) + struct.pack(">HHIH", 1, 1, 86400, 4) + socket.inet_aton("198.51.100.20")
		s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
		s.bind(("198.51.100.53", 53))
		for port in (33333, 40000, 53000):
		    s.sendto(hdr + q + mx + a, ("192.0.2.10", port))
		print("sent 3")
	PY
}
m0=$(world_stats 'j["dns"]["messages"]')
c0=$(world_stats 'j["dns"]["copied"]')
l0=$(world_stats 'j["dns"]["mx_learned"]')
diag "forged answers from 198.51.100.53:53 -> 192.0.2.10: $(forge)"
sleep 1
m1=$(world_stats 'j["dns"]["messages"]')
c1=$(world_stats 'j["dns"]["copied"]')
l1=$(world_stats 'j["dns"]["mx_learned"]')
diag "dns stats: messages $m0 -> $m1, copied $c0 -> $c1, mx_learned $l0 -> $l1"
check "2a. the tagger copied the forged answers and the daemon read them" \
	world_in_range "$((m1 - m0))" 3
check "2a. ... and learned nothing from them (no query matched)" [ "$l1" = "$l0" ]
check "2a. no mapping to $FRESH" [ "$(sql "select count(*) from addr_mx where mx='$FRESH'")" = 0 ]

# 2b. What such a packet could have written at worst, then a stripped delivery.
sql "INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES('$MX', '$FRESH', 'tls.test', 0, $(($(now) + 86400)))"
after_store_change
if mitm_on; then ok "2b. stripper on the path"; else not_ok "2b. stripper on the path"; cat "$WORLD_DIR/mitm.log" >&2; fi
id=$(world_send $TO "stripped, with a forged name")
expect_deferred "$id" $TO "2b. mail through the stripper, with $FRESH mapped, deferred"
check "2b. ... with the gateway's 451 4.7.4 (tls-history)" \
	grep -qE "said: 451 4\\.7\\.4 tlsgate: .*tls-history" <<<"$DEFERRED_LINE"
check "2b. the stripper did strip STARTTLS" grep -q 'stripped STARTTLS' "$WORLD_DIR/mitm.log"
check "2b. nothing reached mx-tls" world_not world_find_message mx-tls "$id"
check "2b. the block names $NAME, not $FRESH" \
	[ "$(sql "select count(*) from events where kind='block' and rule='tls-history' and mx='$NAME'")" -ge 1 ]
check "2b. $NAME is locked" [ "$(sql "select locked from tls_history where mx='$NAME'")" = 1 ]
check "2b. $FRESH has no history of its own" [ "$(sql "select count(*) from tls_history where mx='$FRESH'")" = 0 ]
diag "block event: $(sql "select mx, rule, verdict, reason from events where kind='block' order by id desc limit 1")"
postsuper_del() { world_exec in postsuper -c "$WORLD_DIR/in/etc" -d "$1" >/dev/null 2>&1; }
postsuper_del "$DEFERRED_QID"

# 3. Every mapping of the address expired (the MTA's own DNS cache outlived
# it): the address is seen without its name.
sql "UPDATE addr_mx SET expires = $(($(now) - 1)) WHERE addr='$MX'"
after_store_change
diag "addr_mx now: $(sql "select mx, secure, expires - strftime('%s','now') from addr_mx where addr='$MX'" | tr '\n' ' ')"
id=$(world_send $TO "stripped, mapping expired")
expect_deferred "$id" $TO "3. mail through the stripper, mapping expired, deferred"
check "3. ... with the gateway's 451 4.7.4, destination locked (tls-history)" \
	grep -qE "said: 451 4\\.7\\.4 tlsgate: destination locked .*tls-history" <<<"$DEFERRED_LINE"
check "3. nothing reached mx-tls" world_not world_find_message mx-tls "$id"
check "3. the block names the last known name $NAME, not the address" \
	[ "$(sql "select mx from events where kind='block' order by id desc limit 1")" = "$NAME" ]
check "3. no history under the bare address was made" \
	[ "$(sql "select count(*) from tls_history where mx='$MX'")" = 0 ]
postsuper_del "$DEFERRED_QID"
# The secure-mode message of item 3: deferred (451), not bounced (550).
id=$(send_as alice@secure.world.test $TO "secure mode, stripped, mapping expired")
expect_deferred "$id" $TO "3. secure-mode mail, mapping expired, stripped: deferred"
check "3. ... 451 4.7.4, not 550" grep -qE "said: 451 4\\.7\\.4 " <<<"$DEFERRED_LINE"
check "3. ... not bounced" world_not grep -q "$DEFERRED_QID: .*status=bounced" "$IN/maillog"
check "3. ... nothing reached mx-tls" world_not world_find_message mx-tls "$id"
SECURE_QID=$DEFERRED_QID

# 4. The operator releases the name; the stripper is gone: delivered.
mitm_off
out=$(world_ctl history release $NAME 2>&1)
check "4. tlsgatectl history release $NAME" [ $? -eq 0 ]
diag "$out"
flush
f=$(world_wait_delivered mx-tls "$id" 30)
check "4. after the release the secure-mode mail is delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
diag "queue $SECURE_QID: $(grep "$SECURE_QID: to=" "$IN/maillog" | sed 's/.*status=/status=/' | tr '\n' '|')"

done_testing
