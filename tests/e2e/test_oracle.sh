#!/bin/bash
# End-to-end differential oracle (issue 17; DESIGN.md threat model, rule 1:
# the daemon judges the bytes that the receiving application will read,
# exactly). A recording SMTP server (tests/e2e/recording_server.py) takes
# mx-plain's port 25 (an iptables REDIRECT in mx-plain's namespace) and
# writes every byte its application reads, per connection; tlsgated runs
# with --judged-dir and writes every client byte each session consumed
# (and --no-offload, so the whole dialog is judged). For every connection:
# what the server read must equal what the daemon judged, byte for byte -
# or, for a connection the gateway blocked, be a prefix of it (the refused
# segment never reached the server). The policy names a secure-mode sender
# domain, so every flow could carry a requirement: what the gateway cannot
# follow must be blocked, never passed with a different reading.
#
# Clients (normal senders unless said): a real Postfix delivery; MAIL FROM
# split over segments; a bad-checksum decoy MAIL FROM before the real one;
# a reset out of sequence in the middle of MAIL FROM; an urgent byte in
# the sender (must be blocked: receivers differ); a secure-mode sender
# (blocked: a prefix).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

e2e_tmpdir JUDGED judged
e2e_tmpdir READ read
secure_world_setup --no-offload --judged-dir "$JUDGED"
MX=198.51.100.30
world_at_exit recorder_off
check "recording server on mx-plain's port 25" recorder_on 10029 "$READ"

attack() { world_exec in "$WORLD_PY" tests/e2e/wire_attack.py "$@" 2>&1; }
split() { world_exec in "$WORLD_PY" tests/e2e/split_command.py "$@" 2>&1; }

# The clients.
id=$(world_send user@plain.test "oracle: a Postfix delivery")
wait_for 30 grep -q "status=sent" "$WORLD_DIR/in/maillog"
check "Postfix delivered to the recording server" grep -q "status=sent" "$WORLD_DIR/in/maillog"
diag "split: $(SPLIT_DELAY=0.2 split $MX 'MAIL FR' 'OM:<bob@exa' 'mple.com>\r\n')"
diag "badsum: $(attack badsum $MX bob@example.com | tr '\n' '|')"
diag "rst: $(attack rst $MX bob@example.com | tr '\n' '|')"
diag "urgent: $(attack urgent $MX bob@example.com | tr '\n' '|')"
diag "secure sender: $(SPLIT_DELAY=0.2 split $MX 'MAIL FROM:<alice@secure.world.test>\r\n')"
sleep 2

# The comparison, connection by connection.
compared=0 equal=0 prefix_blocked=0 bad=0
for r in "$READ"/*.read; do
	[ -f "$r" ] || continue
	base=$(basename "$r" .read)
	j=$JUDGED/$base.judged
	compared=$((compared + 1))
	if [ ! -f "$j" ]; then
		not_ok "$base: the daemon judged this connection"
		bad=$((bad + 1))
		continue
	fi
	port=${base##*-}
	blocked=$(sql "select count(*) from events where kind='block' and client like '%:$port'")
	if cmp -s "$r" "$j"; then
		equal=$((equal + 1))
		ok "$base: the server read exactly what the daemon judged ($(stat -c %s "$r") bytes)"
	elif [ "$blocked" -ge 1 ] && [ "$(head -c "$(stat -c %s "$r")" "$j" | cmp -s - "$r"; echo $?)" = 0 ]; then
		prefix_blocked=$((prefix_blocked + 1))
		ok "$base: blocked; the server read a prefix of what the daemon judged ($(stat -c %s "$r") of $(stat -c %s "$j") bytes)"
	else
		bad=$((bad + 1))
		not_ok "$base: the server read other bytes than the daemon judged"
		diag "read:   $(od -c "$r" | head -8 | tr '\n' ' ')"
		diag "judged: $(od -c "$j" | head -8 | tr '\n' ' ')"
	fi
done
diag "connections compared: $compared (equal $equal, blocked with a prefix $prefix_blocked, differing $bad)"
check "every client above reached the recording server (>= 6 connections)" [ "$compared" -ge 6 ]
check "the urgent-data flow was blocked" [ "$(world_stats "j['verdicts']['blocked_by_reason'].get('urgent-data', 0)")" -ge 1 ]
check "the bad-checksum decoy was dropped" [ "$(world_stats 'j["queue"]["bad_checksum"]')" -ge 1 ]

done_testing
