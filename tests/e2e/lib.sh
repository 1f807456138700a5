# shellcheck shell=bash
# Helpers shared by the end-to-end tests (source after tests/world/lib.sh,
# once the world is up: they use $WORLD_DIR).

# sql QUERY: one query on the gateway's store.
sql() { sqlite3 -batch "$WORLD_DIR/gw/state/tlsgate.db" "$1"; }
# flush: ask the sending Postfix to retry its deferred mail now.
flush() { world_exec in postqueue -c "$WORLD_DIR/in/etc" -f >/dev/null 2>&1; }
# queue_id MSGID [TIMEOUT]: the sender's queue id of that message, waited
# for (TIMEOUT s, default $QUEUE_ID_WAIT or 30): Postfix logs it (cleanup's
# message-id line) a moment after the injection returned, and read before
# that it was empty, so a caller's "$qid: to=..." matched an older
# message's line. Prints nothing and fails when it is not logged in time.
queue_id() {
	local qid end=$((SECONDS + ${2:-${QUEUE_ID_WAIT:-30}}))
	while :; do
		qid=$(grep -F "message-id=<$1>" "$WORLD_DIR/in/maillog" 2>/dev/null |
			sed -n 's/.*: \([0-9A-F]\{6,\}\): .*/\1/p' | head -1)
		[ -n "$qid" ] && { echo "$qid"; return 0; }
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}
# wait_for TIMEOUT CMD...: poll until CMD succeeds.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	while [ "$SECONDS" -lt "$end" ]; do "$@" && return 0; sleep 0.2; done
	return 1
}
# wait_log PATTERN [TIMEOUT]: wait until the sender's maillog matches.
wait_log() { wait_for "${2:-20}" grep -qE "$1" "$WORLD_DIR/in/maillog"; }
# expect_deferred MSGID RCPT DESCRIPTION: one result, ok when the sending
# Postfix defers the message to RCPT within 30 s; sets DEFERRED_QID and
# DEFERRED_LINE (its last deferral line, also shown as a diag).
expect_deferred() {
	DEFERRED_QID=$(queue_id "$1")
	# Without its queue id the pattern would match any message's line.
	if [ -n "$DEFERRED_QID" ] && wait_log "$DEFERRED_QID: to=<$2>.*status=deferred" 30; then
		ok "$3"
	else
		not_ok "$3"
		[ -n "$DEFERRED_QID" ] || diag "the sender never logged message $1"
		world_dump_log in "$1"
	fi
	DEFERRED_LINE=
	[ -z "$DEFERRED_QID" ] ||
		DEFERRED_LINE=$(grep "$DEFERRED_QID: to=<$2>.*deferred" "$WORLD_DIR/in/maillog" | tail -1)
	diag "$DEFERRED_LINE"
}
# send_as FROM TO SUBJECT: inject a message with that envelope sender;
# prints its Message-ID.
send_as() {
	local id file
	id=$(world_msgid)
	file=$WORLD_DIR/msg/${id%@*}
	mkdir -p "$WORLD_DIR/msg"
	world_make_message "$file" "$id" "$2" "$3" && world_inject "$file" "$1" "$2" && echo "$id"
}

# policy_keys: a throw-away minisign key pair in a new directory $POL
# (removed by the caller's trap). Bails out when minisign is missing.
policy_keys() {
	command -v minisign >/dev/null || { echo "Bail out! minisign missing (make deps)"; exit 1; }
	POL=$(mktemp -d /tmp/tlsgate-policy.XXXXXX)
	# The inspector (user tlsgate) reads the key and the policy files.
	chmod 0755 "$POL"
	world_at_exit 'rm -rf "$POL"'
	minisign -G -W -p "$POL/pub.key" -s "$POL/sec.key" >/dev/null 2>&1 ||
		{ echo "Bail out! minisign -G failed"; exit 1; }
}
# policy_sign FILE SERIAL EXPIRES: sign a policy file with $POL's key; the
# trusted comment carries the serial and expiry, as tlsgated requires.
policy_sign() {
	minisign -S -s "$POL/sec.key" -m "$1" -t "serial:$2 expires:$3" >/dev/null 2>&1
}
# secure_policy FILE [RECIPIENT_DOMAIN]: write and sign (serial 1, expiring
# 2099) a policy whose only rule is secure.world.test as a secure-mode
# sender domain (and RECIPIENT_DOMAIN as a secure-mode recipient domain).
secure_policy() {
	local rcpt=''
	[ -n "${2:-}" ] && rcpt=", \"recipient_domains\": [ { \"domain\": \"$2\", \"subdomains\": false } ]"
	printf '{ "policy_version": 1, "serial": 1, "expires": "2099-01-01T00:00:00Z",\n' >"$1"
	printf '  "secure_mode": { "sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ]%s } }\n' \
		"$rcpt" >>"$1"
	policy_sign "$1" 1 2099-01-01T00:00:00Z
}

# secure_world_setup [--rcpt DOMAIN] [TLSGATED_ARGS]: keys and a signed
# policy ($POL/p.json, secure_policy; DOMAIN a secure-mode recipient
# domain too), then the world with tlsgated enforcing it
# (world_e2e_setup); all of it removed at exit.
secure_world_setup() {
	local rcpt=''
	if [ "${1:-}" = --rcpt ]; then
		rcpt=$2
		shift 2
	fi
	policy_keys
	secure_policy "$POL/p.json" "$rcpt"
	world_e2e_setup --policy-key "$POL/pub.key" --policy "$POL/p.json" "$@"
}

# e2e_tmpdir VAR NAME: VAR set to a new directory /tmp/tlsgate-NAME.XXXXXX,
# removed at exit.
e2e_tmpdir() {
	local dir
	dir=$(mktemp -d "/tmp/tlsgate-$2.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
	printf -v "$1" '%s' "$dir"
	world_at_exit "rm -rf '$dir'"
}

# recorder_on PORT DIR [ADDR]: tests/e2e/recording_server.py (every byte
# its application reads, per connection, in DIR) in mx-plain's namespace on
# PORT, and mx-plain's port 25 at ADDR (default 198.51.100.30; an IPv6 one
# through ip6tables) redirected to it (REDIRECT in that namespace); fails
# when it is not ready within 5 s. recorder_off stops it and removes the
# rule: call it from the test's EXIT trap. One at a time.
REC_PID='' REC_RULE=() REC_TABLES=iptables
recorder_on() {
	local addr=${3:-198.51.100.30}
	REC_TABLES=iptables
	[[ $addr == *:* ]] && REC_TABLES=ip6tables
	REC_RULE=(PREROUTING -i eth0 -p tcp -d "$addr" --dport 25 -j REDIRECT --to-ports "$1")
	# nsenter execs the recorder: $! is its own PID
	nsenter --net="/run/netns/$(world_ns mx-plain)" "$WORLD_PY" tests/e2e/recording_server.py \
		"$addr" "$1" "$2" >"$WORLD_DIR/rec.out" 2>"$WORLD_DIR/rec.log" &
	REC_PID=$!
	wait_for 5 grep -qs ready "$WORLD_DIR/rec.out" &&
		world_exec mx-plain "$REC_TABLES" -t nat -A "${REC_RULE[@]}" &&
		wait_for 5 recorder_reachable "$addr" "$2"
}
# recorder_reachable ADDR DIR: a connection to ADDR:25 from mx-tls (on
# mx-plain's bridge, not through the gateway) reaches the recording server;
# its record in DIR is removed again. The first IPv6 connection after the
# REDIRECT rule was at times refused (1 run in 3 of test_dialog_tricks):
# the tests' own connections start after this one.
recorder_reachable() {
	local peer port
	peer=198.51.100.20
	[[ $1 == *:* ]] && peer=2001:db8:2::20
	port=$(world_exec mx-tls "$WORLD_PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 25), 2)
if not s.recv(64).startswith(b"220"):
    sys.exit(1)
print(s.getsockname()[1])' "$1" 2>/dev/null) || return 1
	wait_for 5 test -e "$2/$peer-$port.end"
	rm -f "$2/$peer-$port.read" "$2/$peer-$port.end"
}
recorder_off() {
	[ ${#REC_RULE[@]} -gt 0 ] && world_exec mx-plain "$REC_TABLES" -t nat -D "${REC_RULE[@]}" 2>/dev/null
	[ -n "$REC_PID" ] && { kill "$REC_PID" 2>/dev/null; wait "$REC_PID" 2>/dev/null; }
	REC_PID='' REC_RULE=()
	true
}

# dns_world_setup: the start of an end-to-end test in the DNSSEC world
# (source tests/world/dns.sh first): root, a new world with NSD and a
# validating unbound, torn down on exit. Prints "Bail out!" and exits on
# failure.
dns_world_setup() {
	[ "$(id -u)" = 0 ] || { echo "Bail out! needs root"; exit 1; }
	world_trap
	world_up || { echo "Bail out! world_up failed"; exit 1; }
	dns_up || { echo "Bail out! dns_up failed"; exit 1; }
}
# gw_start_probing [ARGS]: tlsgated whose probes resolve through the
# world's validating resolver (203.0.113.10) from the world's trust anchor.
gw_start_probing() {
	world_gw_start "$@" --probe-resolver 203.0.113.10 --probe-trust-anchor "$DNS_DIR/root.ds" \
		--probe-arg=--transparent-zone --probe-arg=test. ||
		{ echo "Bail out! tlsgated did not start"; exit 1; }
}

# greeting SERVER [CONNECT_S [READ_S]]: from "in", connect to SERVER:25 and
# print the server's greeting, "closed", "timeout" or "error ...".
greeting() {
	world_exec in "$WORLD_PY" -c '
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 25), timeout=float(sys.argv[2]))
    s.settimeout(float(sys.argv[3]))
    print(s.recv(100).decode(errors="replace").strip() or "closed")
except OSError as e:
    print("timeout" if isinstance(e, socket.timeout) else "error %s" % e)
' "$1" "${2:-4}" "${3:-${2:-4}}" 2>&1
}
