#!/bin/bash
# The end-to-end tests' maillog helpers (tests/e2e/lib.sh) against a fake
# sender's maillog, without a world: queue_id waits until Postfix logged
# the message (test_dane.sh cases 17 and 19 failed under load when it read
# the log before that: the empty queue id made "$qid: to=..." match an
# older message's deferral), and expect_deferred never takes an older
# message's line for the one it was asked about. TAP output.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/e2e/lib.sh

WORLD_DIR=$(mktemp -d /tmp/tlsgate-e2e-lib.XXXXXX) || exit 1
trap 'rm -rf "$WORLD_DIR"' EXIT
mkdir -p "$WORLD_DIR/in"
LOG=$WORLD_DIR/in/maillog
# world_dump_log is tests/world/lib.sh's; not needed here.
world_dump_log() { :; }

# An older message to the same recipient, deferred.
cat >"$LOG" <<'EOF'
Dec  7 03:10:00 in postfix/cleanup[100]: 4A1B2C3D4E: message-id=<old.1@in.world.test>
Dec  7 03:10:01 in postfix/smtp[101]: 4A1B2C3D4E: to=<user@tls.test>, relay=198.51.100.20[198.51.100.20]:25, delay=1, status=deferred (TLS is required, but was not offered)
EOF

# The new message is logged 1.5 s after the caller asks for it.
(sleep 1.5 && echo 'Dec  7 03:11:00 in postfix/cleanup[102]: 5F6E7D8C9B: message-id=<new.2@in.world.test>' >>"$LOG") &
start=$SECONDS
qid=$(queue_id new.2@in.world.test)
wait
diag "queue_id returned '$qid' after $((SECONDS - start)) s"
check "queue_id waits for a message Postfix logs after the call" [ "$qid" = 5F6E7D8C9B ]
check "queue_id of the older message is still found at once" \
	[ "$(queue_id old.1@in.world.test)" = 4A1B2C3D4E ]

start=$SECONDS
qid=$(queue_id never.3@in.world.test 2)
rc=$? took=$((SECONDS - start))
check "queue_id of a message never logged fails (status $rc) and prints nothing" \
	[ "$rc" -ne 0 -a -z "$qid" ]
check "... after its timeout, not at once and not much later ($took s)" [ "$took" -ge 1 -a "$took" -le 5 ]

# expect_deferred for a message that is never logged: an older message's
# deferral must not count. Its TAP line is read from a subshell.
out=$(TAP_N=0; TAP_FAILED=0; QUEUE_ID_WAIT=2 expect_deferred never.3@in.world.test \
	user@tls.test "deferred"; echo "line=[$DEFERRED_LINE]")
diag "$(tr '\n' '|' <<<"$out")"
check "expect_deferred: not ok for a message the sender never logged" \
	grep -q '^not ok 1 - deferred' <<<"$out"
check "expect_deferred: no older message's line as its deferral line" grep -q '^line=\[\]$' <<<"$out"

# And for the new message, once its own deferral is logged.
(sleep 1 && echo 'Dec  7 03:11:02 in postfix/smtp[103]: 5F6E7D8C9B: to=<user@tls.test>, relay=198.51.100.20[198.51.100.20]:25, delay=2, status=deferred (host refused)' >>"$LOG") &
out=$(TAP_N=0; TAP_FAILED=0; expect_deferred new.2@in.world.test user@tls.test "deferred"
	echo "line=[$DEFERRED_LINE]")
wait
check "expect_deferred: ok once the message's own deferral is logged" grep -q '^ok 1 - deferred' <<<"$out"
check "... with its own line" grep -q '^line=\[.*5F6E7D8C9B: to=<user@tls.test>.*host refused' <<<"$out"

done_testing
