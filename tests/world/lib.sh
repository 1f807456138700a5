# shellcheck shell=bash
# The tlsgate test world: network namespaces with a real sending Postfix
# ("in"), the gateway ("gw"), a switch ("sw") and real receiving Postfix
# instances ("mx-tls" with STARTTLS, "mx-plain" without). Source this file
# (bash) and call world_up; world.sh is the command-line front end.
#
#   in (192.0.2.10, 2001:db8:1::10)
#    | eth0 -- inside
#   gw (inside 192.0.2.1/2001:db8:1::1, outside 198.51.100.1/2001:db8:2::1)
#    | outside -- p-gw
#   sw (bridge br0) -- p-mxtls -- eth0 mx-tls   (198.51.100.20, 2001:db8:2::20)
#                   -- p-mxplain -- eth0 mx-plain (198.51.100.30, 2001:db8:2::30)
#
# Contract:
# - A world is a run id "tgw<6 hex>"; its namespaces are "<id>-<node>" and
#   its files live in $WORLD_BASE/<id> (Postfix config, queues, mailboxes,
#   logs, test CA, gateway log and control socket). The file "owner" there
#   holds the PID (and start time) of the process the world belongs to; a
#   world whose owner is gone is stale and world_cleanup_stale removes it
#   (processes killed by PID, namespaces deleted, its bpffs pin dir removed).
# - world_up sets WORLD_ID and WORLD_DIR and writes $WORLD_DIR/env; on any
#   failure it tears down what it built and returns non-zero.
# - Nothing leaves the namespaces: the sender routes by transport_maps to
#   address literals, DNS lookups are disabled and every other destination
#   goes to Postfix's error transport.
# - Functions return 0 on success, non-zero on failure, and print diagnostics
#   on stderr.

WORLD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORLD_BASE=${WORLD_BASE:-/tmp/tlsgate-world}
WORLD_BUILD=${WORLD_BUILD:-$WORLD_ROOT/build}
WORLD_TEMPLATES=$WORLD_ROOT/tests/world/postfix
WORLD_NODES="in gw sw mx-tls mx-plain"
WORLD_MTAS="in mx-tls mx-plain"
WORLD_BPFFS=/sys/fs/bpf
# The system's Python (Debian's python3): a version manager's shim on PATH
# can take seconds per start on a loaded machine.
if [ -z "${WORLD_PY:-}" ]; then
	if [ -x /usr/bin/python3 ]; then WORLD_PY=/usr/bin/python3; else WORLD_PY=python3; fi
fi

world_log() { echo "world: $*" >&2; }

# world_ns NODE: the namespace name of NODE in the current world.
world_ns() { echo "$WORLD_ID-${1//-/}"; }

# world_exec NODE CMD...: run CMD in NODE's network namespace. nsenter (not
# "ip netns exec") so the host's mount namespace, and with it the global
# bpffs at /sys/fs/bpf, stays visible: pinned maps must outlive the daemon.
world_exec() {
	local node=$1
	shift
	nsenter --net="/run/netns/$(world_ns "$node")" "$@"
}

# _world_proc_start PID: the start time of PID (field 22 of stat), or empty.
_world_proc_start() {
	[ -r "/proc/$1/stat" ] || return 0
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $20 }'
}

# _world_owner_alive DIR: true while the owner recorded in DIR/owner lives.
_world_owner_alive() {
	local pid start
	# A world being created has its directory a moment before its owner.
	if [ ! -e "$1/owner" ] && [ -d "$1" ]; then
		[ $(($(date +%s) - $(stat -c %Y "$1"))) -lt 60 ] && return 0
		return 1
	fi
	[ -r "$1/owner" ] || return 1
	read -r pid start <"$1/owner" || return 1
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	[ "$(_world_proc_start "$pid")" = "$start" ]
}

# _world_kill_ns NS: kill every process in namespace NS, by PID.
_world_kill_ns() {
	local ns=$1 pids i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] || return 0
		# shellcheck disable=SC2086
		if [ "$i" -lt 5 ]; then kill -TERM $pids 2>/dev/null; else kill -KILL $pids 2>/dev/null; fi
		sleep 0.3
	done
}

# _world_destroy ID: tear down world ID (processes, namespaces, pins, files).
_world_destroy() {
	local id=$1 dir=$WORLD_BASE/$1 ns node pid
	if [ -r "$dir/gw/tlsgated.pid" ]; then
		pid=$(cat "$dir/gw/tlsgated.pid")
		[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
	fi
	for node in $WORLD_MTAS; do
		ns=$id-${node//-/}
		[ -e "/run/netns/$ns" ] || continue
		[ -d "$dir/$node/etc" ] || continue
		nsenter --net="/run/netns/$ns" postfix -c "$dir/$node/etc" stop >/dev/null 2>&1
	done
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^$id-"); do
		_world_kill_ns "$ns"
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "${WORLD_BPFFS:?}/tlsgate-$id"
	rm -rf "${WORLD_BASE:?}/$id"
	[ "$(readlink "$WORLD_BASE/last" 2>/dev/null)" != "$id" ] || rm -f "$WORLD_BASE/last"
}

# world_cleanup_stale: remove worlds whose owner process is gone.
world_cleanup_stale() {
	local ids id
	ids=$({
		ip netns list 2>/dev/null | awk '{ print $1 }' | sed -n 's/^\(tgw[0-9a-f]\{6\}\)-.*/\1/p'
		ls "$WORLD_BASE" 2>/dev/null | grep -E '^tgw[0-9a-f]{6}$'
		ls "$WORLD_BPFFS" 2>/dev/null | sed -n 's/^tlsgate-\(tgw[0-9a-f]\{6\}\)$/\1/p'
	} | sort -u)
	for id in $ids; do
		_world_owner_alive "$WORLD_BASE/$id" && continue
		world_log "removing stale world $id"
		_world_destroy "$id"
	done
}

# _world_link NODE_A IF_A NODE_B IF_B: a veth pair between two namespaces.
_world_link() {
	ip link add "$2" netns "$(world_ns "$1")" type veth \
		peer name "$4" netns "$(world_ns "$3")" || return 1
	ip -n "$(world_ns "$1")" link set "$2" up &&
		ip -n "$(world_ns "$3")" link set "$4" up
}

# _world_addr NODE IF V4/LEN V6/LEN
_world_addr() {
	ip -n "$(world_ns "$1")" addr add "$3" dev "$2" &&
		ip -n "$(world_ns "$1")" -6 addr add "$4" dev "$2" nodad
}

_world_net_up() {
	local node ns
	for node in $WORLD_NODES; do
		ns=$(world_ns "$node")
		ip netns add "$ns" || return 1
		ip -n "$ns" link set lo up || return 1
		# No duplicate address detection: addresses usable at once.
		world_exec "$node" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
			net.ipv6.conf.default.accept_dad=0 || return 1
	done
	_world_link in eth0 gw inside || return 1
	ip -n "$(world_ns sw)" link add br0 type bridge || return 1
	ip -n "$(world_ns sw)" link set br0 up || return 1
	_world_link gw outside sw p-gw || return 1
	_world_link mx-tls eth0 sw p-mxtls || return 1
	_world_link mx-plain eth0 sw p-mxplain || return 1
	for node in p-gw p-mxtls p-mxplain; do
		ip -n "$(world_ns sw)" link set "$node" master br0 || return 1
	done

	_world_addr in eth0 192.0.2.10/24 2001:db8:1::10/64 &&
		_world_addr gw inside 192.0.2.1/24 2001:db8:1::1/64 &&
		_world_addr gw outside 198.51.100.1/24 2001:db8:2::1/64 &&
		_world_addr mx-tls eth0 198.51.100.20/24 2001:db8:2::20/64 &&
		_world_addr mx-plain eth0 198.51.100.30/24 2001:db8:2::30/64 || return 1

	ip -n "$(world_ns in)" route add default via 192.0.2.1 &&
		ip -n "$(world_ns in)" -6 route add default via 2001:db8:1::1 || return 1
	for node in mx-tls mx-plain; do
		ip -n "$(world_ns "$node")" route add default via 198.51.100.1 &&
			ip -n "$(world_ns "$node")" -6 route add default via 2001:db8:2::1 || return 1
	done
	world_exec gw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# _world_ca: a test CA and a server certificate for mx-tls, made now.
_world_ca() {
	local ca=$WORLD_DIR/ca
	mkdir -p "$ca" || return 1
	(
		cd "$ca" || exit 1
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout ca.key -out ca.pem -days 2 -subj "/CN=tlsgate test CA $WORLD_ID" &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-keyout mx-tls.key -out mx-tls.csr -subj "/CN=mx-tls.world.test" &&
			printf 'subjectAltName=DNS:mx-tls.world.test,IP:198.51.100.20,IP:2001:db8:2::20\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
			openssl x509 -req -in mx-tls.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
				-days 2 -extfile ext.cnf -out mx-tls.pem
	) >"$ca/openssl.log" 2>&1 || { cat "$ca/openssl.log" >&2; return 1; }
	chmod 600 "$ca"/*.key
}

# _world_postfix NODE ROLE: NODE's config dir from the templates.
_world_postfix() {
	local node=$1 role=$2 d=$WORLD_DIR/$1 cf
	mkdir -p "$d/etc" "$d/queue" "$d/data" "$d/mail" || return 1
	chown postfix "$d/data" && chown nobody:nogroup "$d/mail" || return 1
	for cf in main.cf master.cf; do
		sed -e "s|@DIR@|$d|g" -e "s|@NODE@|$node|g" -e "s|@BASE@|$WORLD_BASE|g" \
			-e "s|@CA@|$WORLD_DIR/ca|g" \
			"$WORLD_TEMPLATES/$cf" >"$d/etc/$cf" || return 1
	done
	sed -e "s|@DIR@|$d|g" -e "s|@CA@|$WORLD_DIR/ca|g" \
		"$WORLD_TEMPLATES/main-$role.cf" >>"$d/etc/main.cf" || return 1
	[ "$role" != sender ] || cp "$WORLD_TEMPLATES/transport" "$d/etc/transport" || return 1
}

# _world_postfix_start NODE...: start the MTAs in parallel ("postfix start"
# runs Postfix's own configuration checks first, a few seconds each).
_world_postfix_start() {
	local node d pids="" rc=0 pid
	for node in "$@"; do
		d=$WORLD_DIR/$node
		world_exec "$node" postfix -c "$d/etc" start >"$d/start.log" 2>&1 &
		pids="$pids $!"
	done
	for pid in $pids; do wait "$pid" || rc=1; done
	[ "$rc" -eq 0 ] && return 0
	for node in "$@"; do
		d=$WORLD_DIR/$node
		cat "$d/start.log" >&2
		tail -20 "$d/maillog" 2>/dev/null >&2
	done
	return 1
}

# _world_wait_port NODE ADDR PORT: until something listens (10 s).
_world_wait_port() {
	local i
	for i in $(seq 1 100); do
		world_exec "$1" ss -Hltn "sport = :$3" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	world_log "$1: nothing listens on port $3"
	return 1
}

# world_up: build a new world (after removing stale ones). Sets WORLD_ID,
# WORLD_DIR. The owner is WORLD_OWNER_PID if set, else the calling shell.
world_up() {
	local owner=${WORLD_OWNER_PID:-$$}
	world_cleanup_stale
	WORLD_ID=tgw$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	WORLD_DIR=$WORLD_BASE/$WORLD_ID
	export WORLD_ID WORLD_DIR
	# Postfix (user postfix) and virtual (user nobody) walk these paths.
	mkdir -p "$WORLD_DIR/gw" && chmod 755 "$WORLD_BASE" "$WORLD_DIR" || return 1
	# The owner is written before any namespace exists: a namespace without
	# a live owner is always stale.
	echo "$owner $(_world_proc_start "$owner")" >"$WORLD_DIR/owner"
	if ! _world_net_up || ! _world_ca ||
		! _world_postfix mx-tls receiver-tls || ! _world_postfix mx-plain receiver-plain ||
		! _world_postfix in sender || ! _world_postfix_start mx-tls mx-plain in ||
		! _world_wait_port in 127.0.0.1 25 || ! _world_wait_port mx-tls 198.51.100.20 25 ||
		! _world_wait_port mx-plain 198.51.100.30 25; then
		world_log "world_up failed; tearing down $WORLD_ID"
		_world_destroy "$WORLD_ID"
		return 1
	fi
	cat >"$WORLD_DIR/env" <<-EOF
		WORLD_ID=$WORLD_ID
		WORLD_DIR=$WORLD_DIR
	EOF
	ln -sfn "$WORLD_ID" "$WORLD_BASE/last"
	world_log "up: $WORLD_ID ($WORLD_DIR)"
}

# world_down [ID]: tear down the world (default: the current one).
world_down() {
	local id=${1:-${WORLD_ID:-}}
	[ -n "$id" ] || { world_log "down: no world"; return 1; }
	_world_destroy "$id"
	world_log "down: $id"
}

# world_use [ID]: attach to an existing world (default: the last one up).
world_use() {
	local id=${1:-${WORLD_ID:-$(readlink "$WORLD_BASE/last" 2>/dev/null)}}
	[ -n "$id" ] && [ -d "$WORLD_BASE/$id" ] || { world_log "no such world: ${id:-none}"; return 1; }
	WORLD_ID=$id
	WORLD_DIR=$WORLD_BASE/$id
	export WORLD_ID WORLD_DIR
}

# world_trap: tear the world down when the calling script exits.
world_trap() {
	trap _world_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# world_at_exit CMD: CMD (evaluated then) runs when the script exits, the
# last added first, before the world goes down (world_trap's EXIT trap;
# set here too). A test adds its clean-ups instead of setting the trap anew.
WORLD_AT_EXIT=()
world_at_exit() {
	WORLD_AT_EXIT=("$1" "${WORLD_AT_EXIT[@]}")
	trap _world_exit EXIT
}
_world_exit() {
	local cmd
	for cmd in "${WORLD_AT_EXIT[@]}"; do
		eval "$cmd"
	done
	world_down >/dev/null 2>&1
}

# --- mail ---------------------------------------------------------------

# world_msgid: a fresh, unique Message-ID (without angle brackets).
world_msgid() { echo "tgw-$(date +%s%N)-$RANDOM@in.world.test"; }

# world_make_message FILE MSGID TO SUBJECT [BODY_BYTES]: write an RFC 5322
# message with a deterministic ASCII body of about BODY_BYTES (default a
# few lines) to FILE and its body alone to FILE.body.
world_make_message() {
	local file=$1 id=$2 to=$3 subject=$4 size=${5:-0}
	{
		printf 'From: sender@in.world.test\nTo: %s\nSubject: %s\n' "$to" "$subject"
		printf 'Message-ID: <%s>\nDate: %s\nMIME-Version: 1.0\n' "$id" "$(date -R)"
		printf 'Content-Type: text/plain; charset=us-ascii\n\n'
	} >"$file" || return 1
	if [ "$size" -gt 0 ]; then
		# Random bytes, base64 lines: incompressible and line-length safe.
		head -c $((size * 3 / 4)) /dev/urandom | base64 -w 76 >"$file.body"
	else
		printf 'Hello from the tlsgate test world.\nMessage %s.\n' "$id" >"$file.body"
	fi
	cat "$file.body" >>"$file"
}

# world_inject FILE FROM TO: submit FILE to the sender's Postfix over SMTP
# (127.0.0.1:25 in "in"; sendmail -C would need alternate_config_directories
# in the system's main.cf, which the world must not touch).
world_inject() {
	world_exec in "$WORLD_PY" - "$1" "$2" "$3" <<-'EOF'
		import smtplib, sys
		path, frm, to = sys.argv[1:4]
		with open(path, "rb") as f:
		    data = f.read()
		with smtplib.SMTP("127.0.0.1", 25, "in.world.test", timeout=60) as s:
		    s.sendmail(frm, [to], data)
	EOF
}

# world_send TO SUBJECT [BODY_BYTES]: make and inject a message; prints its
# Message-ID. The message is kept in $WORLD_DIR/msg/<id>{,.body}.
world_send() {
	local to=$1 subject=$2 size=${3:-0} id file
	id=$(world_msgid)
	mkdir -p "$WORLD_DIR/msg" || return 1
	file=$WORLD_DIR/msg/${id%@*}
	world_make_message "$file" "$id" "$to" "$subject" "$size" || return 1
	world_inject "$file" sender@in.world.test "$to" || return 1
	echo "$id"
}

# world_node_for DOMAIN: the receiving node for a recipient domain.
world_node_for() {
	case $1 in
	*@tls.test | *@tls6.test | tls.test | tls6.test) echo mx-tls ;;
	*@plain.test | *@plain6.test | plain.test | plain6.test) echo mx-plain ;;
	*) return 1 ;;
	esac
}

# world_find_message NODE MSGID: path of the delivered message, if any.
world_find_message() {
	local f
	for f in "$WORLD_DIR/$1/mail/inbox/new"/*; do
		[ -f "$f" ] || continue
		head -c 16384 "$f" | grep -qiF "Message-ID: <$2>" && { echo "$f"; return 0; }
	done
	return 1
}

# world_wait_delivered NODE MSGID [TIMEOUT]: wait until the message lands in
# NODE's mailbox and print its path; on timeout dump the maillog lines of
# the sender and NODE that mention it (and the queue IDs involved).
world_wait_delivered() {
	local node=$1 id=$2 tmo=${3:-30} end
	end=$((SECONDS + tmo))
	while [ "$SECONDS" -lt "$end" ]; do
		world_find_message "$node" "$id" && return 0
		sleep 0.2
	done
	world_log "timeout: <$id> not delivered to $node within ${tmo}s"
	world_dump_log in "$id" >&2
	world_dump_log "$node" "$id" >&2
	return 1
}

# world_dump_log NODE MSGID: maillog lines for the queue IDs that carried
# MSGID on NODE, plus warnings and errors.
world_dump_log() {
	local log=$WORLD_DIR/$1/maillog qids
	[ -r "$log" ] || return 0
	qids=$(grep -F "message-id=<$2>" "$log" | sed -n 's/.*: \([0-9A-F]\{6,\}\): .*/\1/p' | sort -u | paste -sd'|')
	echo "--- $1 maillog (<$2>: ${qids:-no queue id})"
	grep -E "${qids:-^$}|warning|error|fatal|panic" "$log" | tail -40
}

# world_body_sha FILE [body]: sha256 of a delivered message's body (after
# the header's blank line), or of a whole ".body" file with "body"; trailing
# newlines are ignored (delivery appends one).
world_body_sha() {
	"$WORLD_PY" -c '
import hashlib, sys
data = open(sys.argv[1], "rb").read()
if sys.argv[2] != "body":
    data = data.split(b"\n\n", 1)[1] if b"\n\n" in data else b""
print(hashlib.sha256(data.rstrip(b"\n")).hexdigest())
' "$1" "${2:-message}"
}

# world_intact DELIVERED MSGID: true when the delivered body is the one sent.
world_intact() {
	[ -n "$1" ] && [ -f "$1" ] &&
		[ "$(world_body_sha "$1")" = "$(world_body_sha "$WORLD_DIR/msg/${2%@*}.body" body)" ]
}

# world_in_range X LO [HI]: X is an integer with LO <= X (< HI).
world_in_range() {
	[[ $1 =~ ^-?[0-9]+$ ]] || return 1
	[ "$1" -ge "$2" ] || return 1
	[ -z "${3:-}" ] || [ "$1" -lt "$3" ]
}

# world_not CMD...: true when CMD fails (for tap.sh's check); CMD's output
# is discarded.
world_not() { ! "$@" >/dev/null 2>&1; }

# world_quiet CMD...: CMD with its output discarded.
world_quiet() { "$@" >/dev/null 2>&1; }

# world_gw_clean: no NFQUEUE rule (iptables, ip6tables) and no TC filter on
# the gateway's interfaces: what a stopped daemon must leave behind.
world_gw_clean() {
	local out
	out=$(world_exec gw sh -c 'iptables-save; ip6tables-save' 2>&1) || return 1
	! grep -q NFQUEUE <<<"$out" || return 1
	out=$(world_exec gw sh -c 'tc filter show dev inside ingress; tc filter show dev outside ingress') || return 1
	[ -z "$out" ]
}

# --- the gateway ----------------------------------------------------------

WORLD_TLSGATED=${WORLD_TLSGATED:-$WORLD_BUILD/tlsgated}
WORLD_TLSGATECTL=${WORLD_TLSGATECTL:-$WORLD_BUILD/tlsgatectl}

world_pin_dir() { echo "$WORLD_BPFFS/tlsgate-$WORLD_ID"; }
# world_no_pins: no pin is left after a clean stop. The parent, no longer
# root then, unpins through the directory's descriptor; the directory goes
# where the BPF file system's root is sticky and world-writable (the
# kernel's default, as world_gw_start mounts it) and stays, empty, where
# it is root's alone (systemd's mode=700).
world_no_pins() {
	local d
	d=$(world_pin_dir)
	[ ! -e "$d" ] && return 0
	[ -z "$(ls -A "$d")" ] && [ "$(stat -c %a "$WORLD_BPFFS")" != 1777 ]
}
world_control() { echo "$WORLD_DIR/gw/control.sock"; }
world_gw_pid() { cat "$WORLD_DIR/gw/tlsgated.pid" 2>/dev/null; }

# world_gw_inspector_pid: the pid of the daemon's packet inspector (the child
# that reads the queue), from its stats; empty when it names none.
world_gw_inspector_pid() {
	local p
	p=$(world_stats "(j.get('processes') or {}).get('inspector')" 2>/dev/null)
	world_in_range "$p" 2 && echo "$p"
}

# world_ctl ARGS...: tlsgatectl against the world's daemon.
world_ctl() { world_exec gw "$WORLD_TLSGATECTL" --control "$(world_control)" "$@"; }

# world_gw_start [ARGS...]: start tlsgated in gw (extra ARGS appended), wait
# until it answers "stats" (15 s). Its PID goes to $WORLD_DIR/gw/tlsgated.pid,
# its stderr to $WORLD_DIR/gw/tlsgated.log. The daemon runs in its own
# session so it survives a world.sh command that started it.
world_gw_start() {
	local pid i log=$WORLD_DIR/gw/tlsgated.log
	[ -x "$WORLD_TLSGATED" ] || { world_log "no $WORLD_TLSGATED (make first)"; return 1; }
	mountpoint -q "$WORLD_BPFFS" || mount -t bpf bpf "$WORLD_BPFFS" || return 1
	# Everything the daemon keeps lives in the run, so no two runs (and no
	# run and a real installation) share history or policy state.
	local -a state=()
	local help
	help=$("$WORLD_TLSGATED" --help 2>&1)
	mkdir -p "$WORLD_DIR/gw/state" || return 1
	grep -q -- '--store ' <<<"$help" && state+=(--store "$WORLD_DIR/gw/state/tlsgate.db")
	grep -q -- '--state-dir ' <<<"$help" && state+=(--state-dir "$WORLD_DIR/gw/state")
	echo "=== start $(date +%T) ${WORLD_GW_WRAP:-}${WORLD_GW_WRAP:+ } $*" >>"$log"
	# WORLD_GW_WRAP: words put before the daemon (e.g. "setpriv
	# --bounding-set -chown --"), which must exec it (its pid is the daemon's).
	# shellcheck disable=SC2086 # split into words on purpose
	setsid nsenter --net="/run/netns/$(world_ns gw)" ${WORLD_GW_WRAP:-} "$WORLD_TLSGATED" \
		--inside inside --outside outside --pin-dir "$(world_pin_dir)" \
		--control "$(world_control)" --log-level "${WORLD_LOG_LEVEL:-info}" \
		"${state[@]}" "$@" </dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$WORLD_DIR/gw/tlsgated.pid"
	for i in $(seq 1 150); do
		if ! kill -0 "$pid" 2>/dev/null; then
			world_log "tlsgated exited during start-up; its log:"
			tail -30 "$log" >&2
			return 1
		fi
		world_ctl stats >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	world_log "tlsgated not ready after 15 s; its log:"
	tail -30 "$log" >&2
	return 1
}

# world_gw_stop: SIGTERM and wait (10 s). Returns the daemon's exit status
# when it is this shell's child, 0 otherwise once it is gone.
world_gw_stop() {
	local pid i child=no
	pid=$(world_gw_pid)
	[ -n "$pid" ] || return 0
	[ "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $2 }')" = "$$" ] && child=yes
	kill -TERM "$pid" 2>/dev/null || { rm -f "$WORLD_DIR/gw/tlsgated.pid"; return 0; }
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		# A child shows as a zombie until reaped by wait below.
		[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
		world_log "tlsgated ($pid) ignored SIGTERM for 10 s"
		return 1
	fi
	rm -f "$WORLD_DIR/gw/tlsgated.pid"
	[ "$child" = yes ] || return 0
	wait "$pid" 2>/dev/null
}

# world_gw_remove: tlsgated --remove for the world's gateway (what a stop
# with secure-mode sources leaves attached).
world_gw_remove() {
	nsenter --net="/run/netns/$(world_ns gw)" "$WORLD_TLSGATED" --remove \
		--inside inside --outside outside --pin-dir "$(world_pin_dir)" \
		--control "$(world_control)" >>"$WORLD_DIR/gw/tlsgated.log" 2>&1
}

# world_gw_kill: SIGKILL the daemon (leaves its TC programs, rules, pins).
world_gw_kill() {
	local pid
	pid=$(world_gw_pid)
	[ -n "$pid" ] || return 1
	kill -KILL "$pid" || return 1
	wait "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	rm -f "$WORLD_DIR/gw/tlsgated.pid"
}

# world_json EXPR: evaluate a Python expression over the JSON on stdin bound
# to "j"; prints the result (numbers, or JSON for containers).
world_json() {
	"$WORLD_PY" -c '
import json, sys
j = json.load(sys.stdin)
r = eval(sys.argv[1])
print(json.dumps(r) if isinstance(r, (dict, list)) else r)
' "$1"
}

# world_shape NODE DEV RATE: limit DEV's egress (e.g. "20mbit") so a long
# transfer stays in flight long enough to act during it; world_unshape undoes.
world_shape() {
	world_exec "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst 64kb latency 200ms
}
world_unshape() { world_exec "$1" tc qdisc del dev "$2" root 2>/dev/null; true; }

# world_stats EXPR: evaluate EXPR over "tlsgatectl stats --json" (as j).
world_stats() {
	local out
	out=$(world_ctl stats --json) || return 1
	world_json "$1" <<<"$out"
}

# world_flow SERVER EXPR: evaluate EXPR over the daemon's flow (as j) whose
# server endpoint is SERVER (e.g. 198.51.100.20:25, [2001:db8:2::30]:25 or
# however the daemon prints it); of several, the one with the most bytes.
# Prints "none" when there is no such flow.
world_flow() {
	local out
	out=$(world_ctl flows --json) || return 1
	"$WORLD_PY" -c '
import json, sys
flows = [f for f in json.load(sys.stdin) if f.get("server") == sys.argv[1]]
if not flows:
    print("none"); sys.exit(0)
j = max(flows, key=lambda f: f.get("kernel_bytes", 0) + f.get("queued_bytes", 0))
r = eval(sys.argv[2])
print(json.dumps(r) if isinstance(r, (dict, list)) else r)
' "$1" "$2" <<<"$out"
}

# world_smtp_hold SERVER TO FILE HOLD: from "in", deliver FILE straight to
# SERVER:25 over SMTP (no sending Postfix), then keep the connection open
# HOLD seconds before QUIT, so the flow can be looked at while it lives.
# Runs in the background; its PID is in WORLD_HOLD_PID.
world_smtp_hold() {
	world_exec in "$WORLD_PY" - "$@" <<-'EOF' &
		import smtplib, sys, time
		server, to, path, hold = sys.argv[1:5]
		with open(path, "rb") as f:
		    data = f.read()
		s = smtplib.SMTP(server, 25, "in.world.test", timeout=60)
		s.sendmail("sender@in.world.test", [to], data)
		time.sleep(float(hold))
		s.quit()
	EOF
	WORLD_HOLD_PID=$!
}

# world_e2e_setup [TLSGATED ARGS]: the start of an end-to-end test: root
# and binaries present, a new world torn down on exit, tlsgated running
# (with ARGS and $TLSGATED_ARGS). Prints "Bail out!" and exits on failure.
world_e2e_setup() {
	local b
	[ "$(id -u)" = 0 ] || { echo "Bail out! end-to-end tests need root"; exit 1; }
	for b in "$WORLD_TLSGATED" "$WORLD_TLSGATECTL"; do
		[ -x "$b" ] || { echo "Bail out! $b missing: run make"; exit 1; }
	done
	world_trap
	world_up || { echo "Bail out! world_up failed"; exit 1; }
	diag "world $WORLD_ID ($WORLD_DIR)"
	# shellcheck disable=SC2086
	world_gw_start "$@" ${TLSGATED_ARGS:-} || { echo "Bail out! tlsgated did not start"; exit 1; }
}
