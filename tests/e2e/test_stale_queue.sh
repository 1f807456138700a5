#!/bin/bash
# End-to-end: packets that a dead inspector read but never gave a verdict do
# not hold their queue slots (nfqueue_drop_stale, userspace/nfq.h). The
# parent holds the queue's socket, so the kernel keeps such packets queued
# until someone answers for them; an inspector that crashes while it parses
# a packet leaves exactly that.
#
# gdb stops the inspector in its packet callback (nfqueue_message) with a
# client's SYN read and no verdict sent, and the inspector is SIGKILLed
# there. The parent starts a new one; at its first packet (the SYN's
# retransmission) it drops the dead one's packet in one batch verdict
# (logged), the kernel's queue is empty again (queue.waiting; without the
# drop the packet would wait there until the queue is unbound), and the
# connection gets its greeting.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

command -v gdb >/dev/null || { echo "Bail out! gdb missing (make deps)"; exit 1; }
world_e2e_setup
MX=198.51.100.30
GDB_PID='' CLIENT_PID=''
cleanup() {
	local p
	for p in $GDB_PID $CLIENT_PID; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	world_down >/dev/null 2>&1
}
trap cleanup EXIT

waiting() { world_stats 'j["queue"]["waiting"]' 2>/dev/null; }
queue_empty() { [ "$(waiting)" = 0 ]; }
log_has() { grep -q "$1" "$WORLD_DIR/gw/tlsgated.log"; }

INSP=$(world_gw_inspector_pid)
check "the daemon names its inspector" [ -n "$INSP" ]
INSP=${INSP:-0}
check "nothing waits in the kernel's queue at the start" queue_empty

# Stopped at the next packet it reads, before its verdict.
HIT="$WORLD_DIR/gdb.hit"
gdb -q -batch -p "$INSP" -ex 'set pagination off' -ex 'break nfqueue_message' \
	-ex continue -ex "shell touch $HIT" -ex 'shell sleep 60' \
	>"$WORLD_DIR/gdb.log" 2>&1 &
GDB_PID=$!
if ! wait_for 20 grep -q '^Breakpoint 1 at' "$WORLD_DIR/gdb.log"; then
	# ptrace refused here (a Yama scope, a container): nothing to learn.
	ok "# SKIP gdb could not attach to the inspector: $(grep -v '^$' "$WORLD_DIR/gdb.log" | tail -1)"
	done_testing
	exit
fi
sleep 1 # gdb has continued the inspector

out="$WORLD_DIR/client.out"
greeting $MX 20 10 >"$out" &
CLIENT_PID=$!
check "the inspector stopped in its packet callback with the SYN read" wait_for 10 test -e "$HIT"
kill -KILL "$INSP" 2>/dev/null
kill -KILL "$GDB_PID" 2>/dev/null
wait "$GDB_PID" 2>/dev/null
GDB_PID=''

# The parent restarts the inspector; the dead one's SYN is still queued.
new=''
end=$((SECONDS + 10))
while [ "$SECONDS" -lt "$end" ]; do
	new=$(world_gw_inspector_pid)
	[ -n "$new" ] && [ "$new" != "$INSP" ] && break
	new=''
	sleep 0.2
done
check "the parent started a new inspector ($INSP -> ${new:-none})" [ -n "$new" ]
diag "waiting in the kernel's queue right after the restart: $(waiting)"

wait "$CLIENT_PID" 2>/dev/null
CLIENT_PID=''
diag "client: $(cat "$out")"
check "the connection got its greeting (its SYN sent again, judged anew)" grep -q '^220 ' "$out"
check "the new inspector dropped the dead one's packet (logged)" \
	log_has 'dropping the packets a dead reader left without a verdict'
check "nothing is left waiting in the kernel's queue" wait_for 10 queue_empty
diag "queue: $(world_stats 'j["queue"]' 2>&1)"

done_testing
