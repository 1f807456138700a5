#!/bin/bash
# End-to-end: a bad-checksum segment that the kernel passes and copies
# (issue 17, finding 4; DESIGN.md threat model, rule 1: the gateway judges
# the bytes the receiver reads). The tagger passes some client lines itself
# and copies them to the daemon (docs/datapath.md, "Reads most of the
# dialog from copies"): "QUIT" CRLF after the EHLO reply is one. An on-path
# attacker (tests/e2e/wire_attack.py quitsum) sends such a QUIT at the
# client's next sequence number with a wrong TCP checksum: mx-plain's Linux
# stack drops it, the client's real MAIL FROM takes its place. Believed,
# the QUIT ends the dialog for the daemon, which offloads the flow, and the
# transactions that follow pass unseen. The daemon must instead count the
# copy (queue.copies_bad_checksum) and treat the flow as one it can no
# longer follow (unseen data): blocked where a requirement could apply,
# else passed and counted as passed unfollowed.
#
#  0. an honest Postfix delivery (a normal sender) under the same policy:
#     delivered, and no copy taken for a bad checksum (the checksum that a
#     local sender's offload leaves on veth is not one).
#  1. the secure-mode sender right after the decoy: never answered 250 to
#     MAIL FROM, not delivered; the copy counted.
#  2. a normal sender's transaction, then the secure-mode sender's, in the
#     same connection: blocked for unseen data (verdict and event) at the
#     first MAIL FROM - a reset, as for every flow the gateway cannot
#     follow - and the secure-mode message not delivered.
#  3. control, the daemon without a policy (nothing can be required): the
#     normal sender's mail after the decoy is delivered, counted as passed
#     unfollowed for unseen data.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

secure_world_setup

MX=198.51.100.30
attack() { world_exec in "$WORLD_PY" tests/e2e/wire_attack.py "$@" 2>&1; }
# gw_stat EXPR: a number from the daemon's stats (0 when it has no such key).
gw_stat() { world_stats "$1" 2>/dev/null || echo 0; }
copies_bad() { gw_stat 'j["queue"].get("copies_bad_checksum", 0)'; }
blocked_unseen() { gw_stat "j['verdicts']['blocked_by_reason'].get('unseen-data', 0)"; }
passed_unseen() { gw_stat "j['verdicts'].get('passed_unfollowed_by_reason', {}).get('unseen-data', 0)"; }
events_unseen() { sql "select count(*) from events where kind='block' and reason like '%unseen%'"; }
# delivered LOCAL ID: the message of wire_attack's LOCAL sender (Message-ID
# <LOCAL.ID>) reached mx-plain; waited for a little, as the local delivery
# follows the 250.
delivered() { wait_for "${3:-3}" world_quiet world_find_message mx-plain "$1.$2"; }

# 0. Honest traffic.
id=$(world_send user@plain.test "honest, under a secure-mode policy")
check "honest delivery under the policy: delivered" world_quiet world_wait_delivered mx-plain "$id"
bad0=$(copies_bad)
check "honest delivery: no copy counted with a bad checksum ($bad0)" [ "$bad0" = 0 ]

# 1. The secure-mode sender right after the decoy.
id=$(world_msgid)
out=$(attack quitsum $MX alice@secure.world.test "$id")
diag "secure sender after a decoy QUIT: $(echo "$out" | tr '\n' '|')"
check "decoy QUIT: the secure-mode MAIL FROM is never answered 250" \
	world_not grep -q '^MAIL 250' <<<"$out"
check "decoy QUIT: the secure-mode message is not delivered" world_not delivered alice "$id"
bad1=$(copies_bad)
check "decoy QUIT: the passed copy with a bad checksum is counted ($bad0 -> $bad1)" \
	[ "$bad1" -gt "$bad0" ]

# 2. A normal transaction first, then the secure-mode sender's.
ub0=$(blocked_unseen)
id=$(world_msgid)
out=$(attack quitsum $MX bob@plain.test,alice@secure.world.test "$id")
diag "normal then secure sender after a decoy QUIT: $(echo "$out" | tr '\n' '|')"
check "decoy QUIT, then two transactions: the secure-mode MAIL FROM is never answered 250" \
	[ "$(grep -c '^MAIL 250' <<<"$out")" -lt 2 ]
check "decoy QUIT, then two transactions: the secure-mode message is not delivered" \
	world_not delivered alice "$id"
ub1=$(blocked_unseen)
check "decoy QUIT: blocked for unseen data ($ub0 -> $ub1)" [ "$ub1" -gt "$ub0" ]
check "decoy QUIT: a block event names the unseen data" [ "$(events_unseen)" -ge 1 ]
diag "copies with a bad checksum: $(copies_bad)"

# 3. Control: nothing can be required.
world_gw_stop
world_gw_start || { echo "Bail out! tlsgated did not restart"; exit 1; }
id=$(world_msgid)
out=$(attack quitsum $MX bob@plain.test "$id")
diag "no policy, a normal sender after a decoy QUIT: $(echo "$out" | tr '\n' '|')"
check "no policy: the mail after the decoy QUIT is accepted" grep -q '^END 250' <<<"$out"
check "no policy: and delivered" delivered bob "$id" 10
check "no policy: the copy with a bad checksum is counted" [ "$(copies_bad)" -ge 1 ]
check "no policy: counted as passed unfollowed for unseen data" [ "$(passed_unseen)" -ge 1 ]
world_gw_stop

done_testing
