#!/bin/bash
# End-to-end: a STARTTLS-stripping man in the middle towards a destination
# with TLS history is blocked, and the destination stays locked until an
# operator releases it.
#
# IPv4 (tls.test, 198.51.100.20) and IPv6 (tls6.test, 2001:db8:2::20), each
# MX address with its own history.
#
# Where the attacker sits: between the gateway and mx-tls. An iptables
# REDIRECT in mx-tls's namespace (PREROUTING, so only traffic arriving from
# the network) hands every connection to the MX address, port 25, to
# tests/e2e/starttls_stripper.py, which relays it to Postfix on the same
# address (locally generated, so not redirected again) with STARTTLS taken
# out of the EHLO reply. The gateway therefore sees exactly what a real
# on-path attacker shows it: the same server address and port, the same
# banner, an EHLO reply without STARTTLS, then MAIL FROM in the clear.
#
#  1. history: one delivery over TLS (history level tls).
#  2. the stripper on the path: the sender's Postfix defers the next mail
#     with the gateway's "451 4.7.4 ... tls-history" in reply to MAIL FROM;
#     the stripper did strip; nothing delivered; the destination locked in
#     the store; a block event.
#  3. the stripper removed: the mail stays deferred (destination locked;
#     the gateway answers STARTTLS with 454 and MAIL FROM with the 451).
#     A sender at smtp_tls_security_level = encrypt gives up at that 454
#     and logs it.
#  4. tlsgatectl history release: the queued mail goes out over TLS.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

world_e2e_setup

DB=$WORLD_DIR/gw/state/tlsgate.db
IN=$WORLD_DIR/in
deferrals() { grep -c "$1: to=<$2>.*status=deferred" "$IN/maillog"; }
# wait_deferrals QID TO N [TIMEOUT]: until the sender logged more than N
# deferrals of QID.
wait_deferrals() {
	local end=$((SECONDS + ${4:-30}))
	while [ "$SECONDS" -lt "$end" ]; do
		[ "$(deferrals "$1" "$2")" -gt "$3" ] && return 0
		sleep 0.2
	done
	return 1
}

# retry_deferred WHAT: flush the sender's queue; ok WHAT when it logs
# another deferral of $qid to $to. $line: that deferral.
retry_deferred() {
	local n0
	n0=$(deferrals "$qid" "$to")
	flush
	if wait_deferrals "$qid" "$to" "$n0" 30; then ok "$1"; else
		not_ok "$1"
		world_dump_log in "$id"
	fi
	line=$(grep "$qid: to=<$to>.*deferred" "$IN/maillog" | tail -1)
	diag "$line"
}
# sender_tls LEVEL: the sending Postfix's smtp_tls_security_level.
sender_tls() {
	world_exec in postconf -c "$WORLD_DIR/in/etc" -e "smtp_tls_security_level = $1" &&
		world_exec in postfix -c "$WORLD_DIR/in/etc" reload >/dev/null 2>&1
	sleep 1
}

# The man in the middle for one address family: IPT, MX, PORT, RULE set
# by mitm_on; mitm_off undoes it (also from the exit trap).
MITM_PID='' IPT='' RULE=()
mitm_on() { # mitm_on 4|6 MX PORT
	[ "$1" = 4 ] && IPT=iptables || IPT=ip6tables
	RULE=(PREROUTING -i eth0 -p tcp -d "$2" --dport 25 -j REDIRECT --to-ports "$3")
	world_exec mx-tls "$WORLD_PY" tests/e2e/starttls_stripper.py "$2" "$3" "$2" 25 \
		>"$WORLD_DIR/mitm$1.out" 2>"$WORLD_DIR/mitm$1.log" &
	MITM_PID=$!
	local i
	for i in $(seq 1 50); do
		grep -q ready "$WORLD_DIR/mitm$1.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -q ready "$WORLD_DIR/mitm$1.out" && world_exec mx-tls "$IPT" -t nat -A "${RULE[@]}"
}
mitm_off() {
	[ -n "$IPT" ] && world_exec mx-tls "$IPT" -t nat -D "${RULE[@]}" 2>/dev/null
	if [ -n "$MITM_PID" ]; then
		kill "$MITM_PID" 2>/dev/null
		wait "$MITM_PID" 2>/dev/null
	fi
	MITM_PID='' IPT=''
	true
}
trap 'mitm_off; world_down >/dev/null 2>&1' EXIT

for v in 4 6; do
	if [ $v = 4 ]; then to=user@tls.test mx=198.51.100.20 port=10025
	else to=user@tls6.test mx=2001:db8:2::20 port=10026; fi

	# 1. TLS history.
	id=$(world_send $to "history IPv$v")
	f=$(world_wait_delivered mx-tls "$id" 30)
	check "IPv$v history: first mail delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
	sleep 0.5
	check "IPv$v history: the store remembers $mx at level tls" \
		[ "$(sql "select level from tls_history where mx='$mx'")" = 2 ]

	# 2. The stripping man in the middle.
	if mitm_on $v $mx $port; then ok "IPv$v: stripper on the path (REDIRECT to :$port in mx-tls)"; else
		not_ok "IPv$v: stripper on the path (REDIRECT to :$port in mx-tls)"
		cat "$WORLD_DIR/mitm$v.log" >&2
	fi
	id=$(world_send $to "through the stripper IPv$v")
	qid=$(queue_id "$id")
	if wait_deferrals "$qid" $to 0 30; then ok "IPv$v: mail through the stripper deferred"; else
		not_ok "IPv$v: mail through the stripper deferred"
		world_dump_log in "$id"
	fi
	line=$(grep "$qid: to=<$to>.*deferred" "$IN/maillog" | tail -1)
	diag "$line"
	check "IPv$v: the deferral is the gateway's 451 4.7.4 in reply to MAIL FROM" \
		grep -qE "said: 451 4\\.7\\.4 tlsgate: STARTTLS not offered by MX \\[$mx\\].*in reply to MAIL FROM" <<<"$line"
	check "IPv$v: ... naming the rule tls-history" grep -q 'rule tls-history' <<<"$line"
	check "IPv$v: the stripper did strip STARTTLS" grep -q 'stripped STARTTLS' "$WORLD_DIR/mitm$v.log"
	check "IPv$v: nothing reached mx-tls" world_not world_find_message mx-tls "$id"
	check "IPv$v: the destination is locked in the store" \
		[ "$(sql "select locked from tls_history where mx='$mx'")" = 1 ]
	check "IPv$v: a block event: tls-history, temporary, STARTTLS not offered" \
		[ "$(sql "select count(*) from events where kind='block' and rule='tls-history' and verdict='block-temp' and mx='$mx' and reason like 'STARTTLS not offered%'")" -ge 1 ]
	check "IPv$v: the history level is not lowered by the blocked connection" \
		[ "$(sql "select level from tls_history where mx='$mx'")" = 2 ]

	# 3. The stripper gone: still locked.
	mitm_off
	check "IPv$v: stripper removed (no REDIRECT rule left)" \
		world_not grep -q -- "--to-ports $port" <<<"$(world_exec mx-tls sh -c 'iptables-save -t nat; ip6tables-save -t nat')"
	retry_deferred "IPv$v: without the stripper the mail is deferred again (locked)"
	# The lock is known before anything is said: the gateway answers the
	# STARTTLS itself (454) and the plaintext MAIL FROM that follows with
	# the 451, so the sender's log names the lock, not a TLS failure.
	check "IPv$v: ... with the gateway's 451 4.7.4 destination locked, in reply to MAIL FROM" \
		grep -qE "said: 451 4\\.7\\.4 tlsgate: destination locked .*tls-history.*\\(in reply to MAIL FROM command\\)" <<<"$line"
	check "IPv$v: a block event: destination locked, rule tls-history" \
		[ "$(sql "select count(*) from events where kind='block' and rule='tls-history' and mx='$mx' and reason like 'destination locked%'")" -ge 1 ]
	check "IPv$v: nothing reached mx-tls yet" world_not world_find_message mx-tls "$id"
	check "IPv$v: still locked in the store" [ "$(sql "select locked from tls_history where mx='$mx'")" = 1 ]

	# 3b. A sender that requires TLS (Postfix smtp_tls_security_level =
	# encrypt) gives up at the gateway's 454 to its STARTTLS (RFC 3207:
	# TLS not available for a temporary reason) and logs that reply.
	level=$(world_exec in postconf -c "$WORLD_DIR/in/etc" -h smtp_tls_security_level)
	sender_tls encrypt
	retry_deferred "IPv$v encrypt: the mail is deferred again"
	check "IPv$v encrypt: ... because STARTTLS got the gateway's 454 4.7.4 destination locked" \
		grep -qE "TLS is required, but .*refused to start TLS: 454 4\.7\.4 tlsgate: destination locked .*tls-history" <<<"$line"
	check "IPv$v encrypt: nothing reached mx-tls" world_not world_find_message mx-tls "$id"
	sender_tls "$level"

	# 4. The operator releases the destination.
	out=$(world_ctl history release $mx 2>&1)
	rc=$?
	diag "tlsgatectl history release $mx: $out"
	check "IPv$v: tlsgatectl history release succeeds" [ "$rc" -eq 0 ]
	check "IPv$v: the store shows $mx unlocked" [ "$(sql "select locked from tls_history where mx='$mx'")" = 0 ]
	check "IPv$v: a release event" [ "$(sql "select count(*) from events where kind='release' and mx='$mx'")" -ge 1 ]
	flush
	f=$(world_wait_delivered mx-tls "$id" 30)
	check "IPv$v: after the release the deferred mail is delivered over TLS" grep -q 'with ESMTPS' "${f:-/dev/null}"
	check "IPv$v: ... intact" world_intact "$f" "$id"
done

done_testing
