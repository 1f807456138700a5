#!/bin/bash
# End-to-end: a STARTTLS-stripping man in the middle towards a destination
# with TLS history is blocked, and the destination stays locked until an
# operator releases it.
#
# Where the attacker sits: between the gateway and mx-tls. An iptables
# REDIRECT in mx-tls's namespace (PREROUTING, so only traffic arriving from
# the network) hands every connection to 198.51.100.20:25 to
# tests/e2e/starttls_stripper.py, which relays it to Postfix on the same
# address (locally generated, so not redirected again) with STARTTLS taken
# out of the EHLO reply. The gateway therefore sees exactly what a real
# on-path attacker shows it: the same server address and port, the same
# banner, an EHLO reply without STARTTLS, then MAIL FROM in the clear.
#
#  1. history: one delivery to tls.test over TLS (history level tls).
#  2. the stripper on the path: the sender's Postfix defers the next mail
#     with the gateway's "451 4.7.4 ... tls-history" in reply to MAIL FROM;
#     the stripper did strip; nothing delivered; the destination locked in
#     the store; a block event.
#  3. the stripper removed: the mail stays deferred (destination locked;
#     the gateway resets the TLS handshake of the locked destination).
#  4. tlsgatectl history release: the queued mail goes out over TLS.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh

world_e2e_setup

DB=$WORLD_DIR/gw/tlsgate.db
sql() { sqlite3 -batch "$DB" "$1"; }
IN=$WORLD_DIR/in
MX=198.51.100.20
MITM_PORT=10025
flush() { world_exec in postqueue -c "$IN/etc" -f >/dev/null 2>&1; }
queue_id() { grep -F "message-id=<$1>" "$IN/maillog" | sed -n 's/.*: \([0-9A-F]\{6,\}\): .*/\1/p' | head -1; }
deferrals() { grep -c "$1: to=<user@tls.test>.*status=deferred" "$IN/maillog"; }
# wait_deferrals QID N [TIMEOUT]: until the sender logged more than N deferrals.
wait_deferrals() {
	local end=$((SECONDS + ${3:-30}))
	while [ "$SECONDS" -lt "$end" ]; do
		[ "$(deferrals "$1")" -gt "$2" ] && return 0
		sleep 0.2
	done
	return 1
}

REDIRECT=(PREROUTING -i eth0 -p tcp -d $MX --dport 25 -j REDIRECT --to-ports $MITM_PORT)
MITM_PID=
mitm_on() {
	world_exec mx-tls "$WORLD_PY" tests/e2e/starttls_stripper.py $MX $MITM_PORT $MX 25 \
		>"$WORLD_DIR/mitm.out" 2>"$WORLD_DIR/mitm.log" &
	MITM_PID=$!
	local i
	for i in $(seq 1 50); do
		grep -q ready "$WORLD_DIR/mitm.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -q ready "$WORLD_DIR/mitm.out" && world_exec mx-tls iptables -t nat -A "${REDIRECT[@]}"
}
mitm_off() {
	world_exec mx-tls iptables -t nat -D "${REDIRECT[@]}" 2>/dev/null
	if [ -n "$MITM_PID" ]; then
		kill "$MITM_PID" 2>/dev/null
		wait "$MITM_PID" 2>/dev/null
		MITM_PID=
	fi
	# connections already tracked to the proxy must not survive it
	world_exec mx-tls conntrack -D -p tcp --orig-dst $MX --dport 25 >/dev/null 2>&1
	true
}
trap 'mitm_off; world_down >/dev/null 2>&1' EXIT

# 1. TLS history.
id=$(world_send user@tls.test "history")
f=$(world_wait_delivered mx-tls "$id" 30)
check "history: first mail delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
sleep 0.5
check "history: the store remembers $MX at level tls" \
	[ "$(sql "select level from tls_history where mx='$MX'")" = 2 ]

# 2. The stripping man in the middle.
if mitm_on; then ok "stripper on the path (REDIRECT to :$MITM_PORT in mx-tls)"; else
	not_ok "stripper on the path (REDIRECT to :$MITM_PORT in mx-tls)"
	cat "$WORLD_DIR/mitm.log" >&2
fi
id=$(world_send user@tls.test "through the stripper")
qid=$(queue_id "$id")
if wait_deferrals "$qid" 0 30; then ok "mail through the stripper: deferred"; else
	not_ok "mail through the stripper: deferred"
	world_dump_log in "$id"
fi
line=$(grep "$qid: to=<user@tls.test>.*deferred" "$IN/maillog" | tail -1)
diag "$line"
check "the deferral is the gateway's 451 4.7.4 in reply to MAIL FROM" \
	grep -qE "said: 451 4\\.7\\.4 tlsgate: STARTTLS not offered by MX \\[$MX\\].*in reply to MAIL FROM" <<<"$line"
check "... naming the rule tls-history" grep -q 'rule tls-history' <<<"$line"
check "the stripper did strip STARTTLS" grep -q 'stripped STARTTLS' "$WORLD_DIR/mitm.log"
check "nothing reached mx-tls" world_not world_find_message mx-tls "$id"
check "the destination is locked in the store" \
	[ "$(sql "select locked from tls_history where mx='$MX'")" = 1 ]
check "a block event: tls-history, temporary, STARTTLS not offered" \
	[ "$(sql "select count(*) from events where kind='block' and rule='tls-history' and verdict='block-temp' and mx='$MX' and reason like 'STARTTLS not offered%'")" -ge 1 ]
check "the history level is not lowered by the blocked connection" \
	[ "$(sql "select level from tls_history where mx='$MX'")" = 2 ]

# 3. The stripper gone: still locked.
mitm_off
check "stripper removed (no REDIRECT rule left)" \
	world_not grep -q "$MITM_PORT" <<<"$(world_exec mx-tls iptables -t nat -S PREROUTING)"
n0=$(deferrals "$qid")
flush
if wait_deferrals "$qid" "$n0" 30; then ok "without the stripper the mail is deferred again (locked)"; else
	not_ok "without the stripper the mail is deferred again (locked)"
	world_dump_log in "$id"
fi
line=$(grep "$qid: to=<user@tls.test>.*deferred" "$IN/maillog" | tail -1)
diag "$line"
# The lock is known before anything is said, but the gateway judges the
# flow only at MAIL FROM or at the ServerHello, whichever comes first: with
# STARTTLS back that is the ServerHello, so the handshake is reset (and
# Postfix says "Cannot start TLS"); a plaintext retry would get the 451.
check "... the TLS handshake reset, or 451 4.7.4 destination locked" \
	grep -qE "status=deferred \\(Cannot start TLS: handshake failure\\)|said: 451 4\\.7\\.4 tlsgate: destination locked .*tls-history" <<<"$line"
check "a block event: destination locked, rule tls-history" \
	[ "$(sql "select count(*) from events where kind='block' and rule='tls-history' and mx='$MX' and reason like 'destination locked%'")" -ge 1 ]
check "nothing reached mx-tls yet" world_not world_find_message mx-tls "$id"
check "still locked in the store" [ "$(sql "select locked from tls_history where mx='$MX'")" = 1 ]

# 4. The operator releases the destination.
out=$(world_ctl history release $MX 2>&1)
rc=$?
diag "tlsgatectl history release $MX: $out"
check "tlsgatectl history release succeeds" [ "$rc" -eq 0 ]
check "the store shows $MX unlocked" [ "$(sql "select locked from tls_history where mx='$MX'")" = 0 ]
check "a release event" [ "$(sql "select count(*) from events where kind='release' and mx='$MX'")" -ge 1 ]
flush
f=$(world_wait_delivered mx-tls "$id" 30)
check "after the release the deferred mail is delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
check "... intact" world_intact "$f" "$id"

done_testing
