#!/bin/bash
# The tlsgate test world from the command line (see lib.sh for the layout).
#
#   world.sh up                 build a world; prints WORLD_ID=... (it lives
#                               as long as the calling shell, or until down)
#   world.sh down [ID]          tear it down (default: the last one up)
#   world.sh status [ID]        namespaces, addresses, MTAs, daemon
#   world.sh exec NODE CMD...   run CMD in NODE (in gw sw mx-tls mx-plain)
#   world.sh gw-start [ARGS]    start tlsgated in gw (ARGS passed on)
#   world.sh gw-stop|gw-kill    SIGTERM / SIGKILL it
#   world.sh ctl ARGS...        tlsgatectl against the world's daemon
#   world.sh send TO [SUBJECT] [BYTES]   send a message; prints Message-ID
#   world.sh wait NODE MSGID [TIMEOUT]   wait for its delivery
#   world.sh cleanup            remove stale worlds
# Commands other than up use $WORLD_ID if set, else the last world up.
set -u
# shellcheck source=tests/world/lib.sh
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
up)
	# The world belongs to the shell that ran us, not to this script.
	WORLD_OWNER_PID=${WORLD_OWNER_PID:-$PPID} world_up || exit 1
	echo "WORLD_ID=$WORLD_ID"
	;;
down)
	world_use "${1:-}" && world_down
	;;
cleanup)
	world_cleanup_stale
	;;
status)
	world_use "${1:-}" || exit 1
	echo "world $WORLD_ID in $WORLD_DIR (owner: $(cat "$WORLD_DIR/owner"))"
	for node in $WORLD_NODES; do
		echo "== $node ($(world_ns "$node"))"
		world_exec "$node" ip -br addr | grep -v '^lo ' | sed 's/^/   /'
	done
	for node in $WORLD_MTAS; do
		if world_exec "$node" postfix -c "$WORLD_DIR/$node/etc" status >/dev/null 2>&1; then
			echo "$node: postfix running (log $WORLD_DIR/$node/maillog)"
		else
			echo "$node: postfix NOT running"
		fi
	done
	pid=$(world_gw_pid)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo "tlsgated: running, pid $pid"
		world_ctl stats
	else
		echo "tlsgated: not running"
	fi
	;;
exec)
	[ $# -ge 2 ] || usage
	world_use || exit 1
	world_exec "$@"
	;;
gw-start)
	world_use && world_gw_start "$@"
	;;
gw-stop)
	world_use && world_gw_stop
	;;
gw-kill)
	world_use && world_gw_kill
	;;
ctl)
	world_use && world_ctl "$@"
	;;
send)
	[ $# -ge 1 ] || usage
	world_use && world_send "$1" "${2:-test from world.sh}" "${3:-0}"
	;;
wait)
	[ $# -ge 2 ] || usage
	world_use && world_wait_delivered "$1" "$2" "${3:-30}"
	;;
*)
	usage
	;;
esac
