#!/bin/bash
# End-to-end: on-path tricks against a secure-mode sender (issue 17; DESIGN.md
# threat model, rule 1: the gateway judges the bytes the receiver reads, and
# blocks what it cannot follow). The receiver is mx-plain's real Postfix
# (Linux TCP); the sender is a secure-mode envelope domain
# (secure.world.test), so every message below must not be delivered in
# plaintext. Where the dialog is still plaintext and the gateway can follow
# it, the sender gets the gateway's 550 5.7.4 in SMTP.
#
#  1. a decoy MAIL FROM with a wrong TCP checksum at the real one's sequence
#     number (the server drops it): the gateway drops it too and judges the
#     real MAIL FROM: 550 5.7.4; bad_checksum counted.
#  2. one byte of the sender domain sent as TCP urgent data (Linux takes it
#     out of the stream, the server reads secure.world.test): the flow is
#     reset, never answered 250; a block event names urgent data.
#  3. a reset one past the right sequence number between two pieces of MAIL
#     FROM (the server ignores it, RFC 5961): the gateway reads on: 550.
#  4. junk before the server's greeting ("X" CRLF, which Postfix's client
#     skips): a real Postfix sender's secure-mode mail bounces with the
#     gateway's 550 5.7.4, nothing reaches mx-plain.
#  5. an SSH banner before the greeting: not delivered either (bounced by
#     the gateway or deferred after a reset).
#  6. overload: with a queue of 2 packets and the inspector stopped (SIGSTOP),
#     a connection's packets that find the queue full are dropped, not
#     passed unseen (no greeting reaches the client); counted as queue
#     drops; after SIGCONT the connection goes on under inspection.
#  7. a full flow table (--max-flows 3, three dialogs held open): a fourth
#     connection is refused (its SYN dropped, counted), not let in by
#     evicting a dialog under inspection; once they close, new connections
#     get through again.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

secure_world_setup --rcpt vault.world.test
world_at_exit junk_off

MX=198.51.100.30
attack() { world_exec in "$WORLD_PY" tests/e2e/wire_attack.py "$@" 2>&1; }
blocked_by() { world_stats "j['verdicts']['blocked_by_reason'].get('$1', 0)"; }
events_like() { sql "select count(*) from events where kind='block' and reason like '%$1%'"; }

# 1. Bad checksum decoy.
bad0=$(world_stats 'j["queue"]["bad_checksum"]')
out=$(attack badsum $MX alice@secure.world.test)
diag "badsum: $(echo "$out" | tr '\n' '|')"
check "bad-checksum decoy: the real MAIL FROM is refused with 550 5.7.4" \
	grep -q '^550 5.7.4 ' <<<"$out"
bad1=$(world_stats 'j["queue"]["bad_checksum"]')
check "bad-checksum decoy: dropped and counted ($bad0 -> $bad1)" [ "$bad1" -gt "$bad0" ]

# 2. Urgent data.
out=$(attack urgent $MX alice@secure.world.test)
diag "urgent: $(echo "$out" | tr '\n' '|')"
check "urgent byte in the sender domain: MAIL FROM never accepted" \
	world_not grep -q '^250' <<<"$out"
check "urgent byte: blocked for urgent data" [ "$(blocked_by urgent-data)" -ge 1 ]
check "urgent byte: a block event names the anomaly" [ "$(events_like 'urgent')" -ge 1 ]

# 3. Spoofed reset out of sequence.
out=$(attack rst $MX alice@secure.world.test)
diag "rst: $(echo "$out" | tr '\n' '|')"
check "reset out of sequence mid-MAIL FROM: the whole line is judged, 550 5.7.4" \
	grep -q '^550 5.7.4 ' <<<"$out"

# 4./5. Junk before the greeting, through a relay in mx-plain's namespace.
JUNK_PID='' JUNK_RULE=()
junk_on() { # junk_on PREFIX PORT
	JUNK_RULE=(PREROUTING -i eth0 -p tcp -d $MX --dport 25 -j REDIRECT --to-ports "$2")
	# nsenter execs the relay: $! is the relay's own PID, for the kill
	STRIPPER_PREFIX=$1 nsenter --net="/run/netns/$(world_ns mx-plain)" "$WORLD_PY" \
		tests/e2e/starttls_stripper.py $MX "$2" $MX 25 >"$WORLD_DIR/junk$2.out" \
		2>"$WORLD_DIR/junk$2.log" &
	JUNK_PID=$!
	wait_for 5 grep -q ready "$WORLD_DIR/junk$2.out" &&
		world_exec mx-plain iptables -t nat -A "${JUNK_RULE[@]}"
}
junk_off() {
	[ ${#JUNK_RULE[@]} -gt 0 ] && world_exec mx-plain iptables -t nat -D "${JUNK_RULE[@]}" 2>/dev/null
	if [ -n "$JUNK_PID" ]; then
		kill "$JUNK_PID" 2>/dev/null
		wait "$JUNK_PID" 2>/dev/null
	fi
	JUNK_PID='' JUNK_RULE=()
	true
}

# not_delivered ID: nothing with that Message-ID reached mx-plain.
not_delivered() { [ -z "$(world_find_message mx-plain "$1")" ]; }

check "junk relay on the path" junk_on 'X\r\n' 10027
id=$(send_as alice@secure.world.test user@plain.test "junk before the greeting")
qid=$(queue_id "$id")
if wait_log "$qid: to=<user@plain.test>.*status=(bounced|deferred)" 30; then
	line=$(grep "$qid: to=<user@plain.test>" "$WORLD_DIR/in/maillog" | tail -1)
	diag "$line"
	check "junk before the greeting: bounced with the gateway's 550 5.7.4" \
		grep -q 'status=bounced.*550 5.7.4' <<<"$line"
else
	not_ok "junk before the greeting: bounced with the gateway's 550 5.7.4"
	world_dump_log in "$id"
fi
check "junk before the greeting: nothing delivered to mx-plain" not_delivered "$id"
junk_off

check "banner relay on the path" junk_on 'SSH-2.0-OpenSSH_9.2\r\n' 10028
id=$(send_as alice@secure.world.test user@plain.test "ssh banner before the greeting")
qid=$(queue_id "$id")
if wait_log "$qid: to=<user@plain.test>.*status=(bounced|deferred)" 30; then
	ok "SSH banner before the greeting: the sender bounced or deferred it"
	diag "$(grep "$qid: to=<user@plain.test>" "$WORLD_DIR/in/maillog" | tail -1)"
else
	not_ok "SSH banner before the greeting: the sender bounced or deferred it"
	world_dump_log in "$id"
	tail -15 "$WORLD_DIR/gw/tlsgated.log" >&2
fi
check "SSH banner before the greeting: nothing delivered to mx-plain" not_delivered "$id"
junk_off

# 6. A full queue drops, never passes.
world_gw_stop
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/p.json" --queue-maxlen 2 ||
	{ echo "Bail out! tlsgated did not restart"; exit 1; }
# The inspector reads the queue (the parent only supervises): stop it.
inspid=$(world_gw_inspector_pid)
check "queue full: the daemon names its inspector" [ -n "$inspid" ]
kill -STOP "${inspid:-0}" 2>/dev/null
out=$(greeting $MX 8 4)
kill -CONT "${inspid:-0}" 2>/dev/null
diag "daemon stopped, queue of 2: $out"
check "queue full: nothing passed unseen (no greeting while the daemon is stopped)" \
	[ "$out" = timeout ]
sleep 1
check "queue full: the inspector reads the kernel's counters" \
	[ "$(world_stats 'j["queue"].get("kernel_counters")')" = True ]
check "queue full: the kernel counted the drops" [ "$(world_stats 'j["queue"]["drops"]')" -ge 1 ]

# 7. A full flow table refuses new connections, evicts no dialog.
world_gw_stop
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/p.json" --max-flows 3 ||
	{ echo "Bail out! tlsgated did not restart"; exit 1; }
world_exec in "$WORLD_PY" tests/bench/flowtool.py hold $MX 25 3 12 >"$WORLD_DIR/hold.out" 2>&1 &
HOLD_PID=$!
wait_for 10 grep -q 'held 3' "$WORLD_DIR/hold.out"
check "three dialogs held open through the gateway" grep -q 'held 3' "$WORLD_DIR/hold.out"
out=$(greeting $MX)
diag "a fourth connection: $out"
check "flow table full: a fourth connection gets no greeting" [ "$out" = timeout ]
check "flow table full: counted as refused" [ "$(world_stats 'j["flows"]["refused_full"]')" -ge 1 ]
check "flow table full: no flow evicted" [ "$(world_stats 'j["flows"]["evicted"]')" = 0 ]
wait "$HOLD_PID"
sleep 1
out=$(greeting $MX)
diag "after the held dialogs closed: $out"
check "after they closed: a new connection gets its greeting" grep -q '^220 ' <<<"$out"

done_testing
