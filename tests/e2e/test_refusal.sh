#!/bin/bash
# End-to-end: a refusal leaves neither side waiting, and a reused
# connection is judged anew (issue 17, findings 12 and 6; DESIGN.md threat
# model). Through the real tagger, NFQUEUE and tlsgated; the server is a
# recording one (tests/e2e/recording_server.py: what its application read,
# and how and when its connection ended) on extra addresses of mx-plain,
# 198.51.100.31 and 2001:db8:2::31. The policy makes secure.world.test a
# secure-mode sender domain: its plaintext MAIL FROM is refused in SMTP.
#
#  1. (finding 12) the LF that completes a refused MAIL FROM arrives in one
#     segment with the pipelined RCPT TO and DATA, right behind the rest of
#     the line: the client gets 550 5.7.4 and a reply to each command, the
#     server's connection is reset within a few seconds (RFC 5961: a reset
#     only counts at exactly the server's next sequence number), and the
#     server never read the whole MAIL FROM. IPv4 and IPv6, LF alone and CR
#     LF in the second segment, with and without the kernel's offload.
#  2. (finding 6) a plaintext session of a normal sender, offloaded to the
#     kernel at QUIT and closed with a reset; then a new connection on the
#     same addresses and ports with the same initial sequence number, with
#     a secure-mode sender: judged from the start (not a retransmission of
#     the old SYN, not passed on the old PASS entry): 550 5.7.4, the server
#     never reads its MAIL FROM, counted as reopened, a block event.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

e2e_tmpdir READ read
secure_world_setup
# The recorders listen on port 10025 of mx-plain; connections to the
# extra addresses' port 25 are redirected there (Postfix has port 25).
REC4=198.51.100.31 REC6=2001:db8:2::31
REC_PIDS=()
rec_off() {
	local pid
	for pid in "${REC_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	REC_PIDS=()
	true
}
world_at_exit rec_off
mxp() { ip -n "$(world_ns mx-plain)" "$@"; }
mxp addr add $REC4/24 dev eth0 && mxp -6 addr add $REC6/64 dev eth0 nodad &&
	world_exec mx-plain iptables -t nat -A PREROUTING -i eth0 -p tcp -d $REC4 --dport 25 \
		-j REDIRECT --to-ports 10025 &&
	world_exec mx-plain ip6tables -t nat -A PREROUTING -i eth0 -p tcp -d $REC6 --dport 25 \
		-j REDIRECT --to-ports 10025
check "recording addresses $REC4 and $REC6 on mx-plain" [ $? = 0 ]
# REDIRECT takes the interface's first address; asyncio binds "::" IPv6 only
for a in 198.51.100.30 ::; do
	# nsenter execs the recorder: $! is its own PID
	nsenter --net="/run/netns/$(world_ns mx-plain)" "$WORLD_PY" tests/e2e/recording_server.py \
		"$a" 10025 "$READ" >"$WORLD_DIR/rec-$a.out" 2>"$WORLD_DIR/rec-$a.log" &
	REC_PIDS+=($!)
	wait_for 5 grep -q ready "$WORLD_DIR/rec-$a.out"
	check "recording server on [$a]:10025" grep -q ready "$WORLD_DIR/rec-$a.out"
done

# 1. The LF of a refused MAIL FROM together with pipelined RCPT TO, DATA.
# split_tries LABEL SERVER TRIES [ENV...]: the tries, then for each the
# client's replies and the server's end, checked; prints a summary line.
split_tries() {
	local label=$1 server=$2 tries=$3 port t replies end how at refused=0 reset=0 read_mail=0
	shift 3
	local out
	out=$(env "$@" nsenter --net="/run/netns/$(world_ns in)" "$WORLD_PY" \
		tests/e2e/split_refusal.py "$server" alice@secure.world.test "$tries" 2>&1)
	while read -r port t replies; do
		[[ "$replies" == "550 5.7.4 "*"|503 "*"|554 "* ]] && refused=$((refused + 1))
		end=''
		wait_for 4 compgen -G "$READ/*-$port.end" >/dev/null
		end=$(cat "$READ"/*-"$port".end 2>/dev/null)
		how=${end% *} at=${end#* }
		if [ "$how" = reset ] && awk -v a="$at" -v t="$t" 'BEGIN { exit !(a - t < 4) }'; then
			reset=$((reset + 1))
		else
			diag "$label: port $port: client $t ($replies); server: ${end:-still open}"
		fi
		# the recorder writes whole lines (and an unfinished one at EOF)
		grep -aqs 'MAIL FROM:<alice@secure' "$READ"/*-"$port".read && read_mail=$((read_mail + 1))
	done <<<"$out"
	diag "$label: $tries tries: refused $refused, server reset promptly $reset, server read the MAIL FROM $read_mail"
	check "$label: each try refused with 550 5.7.4, 503 to RCPT, 554 to DATA" [ "$refused" = "$tries" ]
	check "$label: the server side reset within 4 s each time" [ "$reset" = "$tries" ]
	check "$label: the server never read the whole MAIL FROM" [ "$read_mail" = 0 ]
}

blocks0=$(sql "select count(*) from events where kind='block'")
split_tries "IPv4, LF with RCPT+DATA" $REC4 8
split_tries "IPv6, LF with RCPT+DATA" $REC6 8
split_tries "IPv4, CR LF with RCPT+DATA" $REC4 8 SPLIT_CUT=2
blocks1=$(sql "select count(*) from events where kind='block'")
check "a block event for each refusal ($blocks0 -> $blocks1)" [ $((blocks1 - blocks0)) -ge 24 ]

world_gw_stop
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/p.json" --no-offload ||
	{ echo "Bail out! tlsgated did not restart"; exit 1; }
split_tries "no offload, IPv4, LF with RCPT+DATA" $REC4 8
split_tries "no offload, IPv6, LF with RCPT+DATA" $REC6 8

# 2. A reused connection: same addresses, ports and initial sequence number.
world_gw_stop
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/p.json" ||
	{ echo "Bail out! tlsgated did not restart"; exit 1; }
out=$(world_exec in "$WORLD_PY" tests/e2e/reuse_isn.py $REC4 bob@example.com \
	alice@secure.world.test 2>&1)
diag "reused ISN: $(echo "$out" | tr '\n' '/')"
port=$(sed -n 's/^port \([0-9]*\) isn .*/\1/p' <<<"$out")
first=$(sed -n 2p <<<"$out") second=$(sed -n 3p <<<"$out")
check "reused ISN: the first session (normal sender) is accepted and ends with QUIT" \
	grep -q '^250 .*|250 .*|221 ' <<<"$first"
check "reused ISN: the first session was offloaded to the kernel" \
	[ "$(world_stats 'j["flows"]["offloaded_total"]')" -ge 1 ]
check "reused ISN: the secure-mode MAIL FROM on the new connection is refused with 550 5.7.4" \
	grep -q '^550 5.7.4 ' <<<"$second"
check "reused ISN: the server read two connections from port $port" \
	[ -f "$READ/192.0.2.10-$port.read" -a -f "$READ/192.0.2.10-$port.2.read" ]
check "reused ISN: the server never read the secure-mode MAIL FROM" \
	world_not grep -aq 'alice@secure' "$READ/192.0.2.10-$port.2.read"
check "reused ISN: counted as a new connection on a known flow's key" \
	[ "$(world_stats 'j["flows"]["reopened"]')" -ge 1 ]
check "reused ISN: a block event names the secure-mode sender on that connection" \
	[ "$(sql "select count(*) from events where kind='block' and client like '%:$port' and sender='secure.world.test'")" -ge 1 ]

done_testing
