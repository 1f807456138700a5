#!/bin/bash
# End-to-end: least privilege for what reads the network (issue 19, parts
# done so far), in the DNSSEC test world.
#
#  1. The probe runs as an unprivileged user with no capabilities: a probe
#     that tlsgated starts (slow.test: its TLSA lookup takes seconds, long
#     enough to look at the process) has, in /proc/PID/status, the probe
#     user's uid and gid (real, effective, saved, fs), no supplementary
#     group, CapInh/CapPrm/CapEff/CapBnd/CapAmb all zero and NoNewPrivs 1,
#     and none of the daemon's BPF or netlink descriptors. Its results
#     still land in the store (dane-ee.test: verdict dane), which the
#     daemon shared with the probe's group (0660).
#     Before: the probe ran as root with the daemon's capabilities.
#  2. The control socket does not hold packets: while clients connect and
#     never finish a command line (one drips a byte every 0.3 s, one
#     connects and stays silent, both reconnecting), a message goes through
#     the gateway within 20 s and "tlsgatectl stats" answers within 3 s.
#     Before: the packet thread waited up to 1 s per read for each client
#     (256 reads for the dripping one), so the message waited with it.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh
. tests/world/dns.sh

dns_world_setup
diag "world $WORLD_ID"
DB=$WORLD_DIR/gw/tlsgate.db
PUSER=${PROBE_USER:-nobody}
PUID=$(id -u "$PUSER") PGID=$(id -g "$PUSER")
# (A daemon without --probe-user, the old one, runs its probes as root.)
pu=()
"$WORLD_TLSGATED" --help 2>&1 | grep -q -- --probe-user && pu=(--probe-user "$PUSER")
gw_start_probing "${pu[@]}"
GWPID=$(world_gw_pid)

# --- 1. the probe ------------------------------------------------------------
world_ctl probe slow.test >/dev/null
probe_pid() {
	local c
	for c in $(cat /proc/"$GWPID"/task/*/children 2>/dev/null); do
		grep -q tlsgate-probe "/proc/$c/cmdline" 2>/dev/null && { echo "$c"; return 0; }
	done
	return 1
}
pp=
for _ in $(seq 1 50); do pp=$(probe_pid) && break; sleep 0.1; done
if [ -z "$pp" ]; then
	not_ok "a probe child of tlsgated runs (slow.test)"
	tail -5 "$WORLD_DIR/gw/tlsgated.log" | sed 's/^/# /'
else
	ok "a probe child of tlsgated runs (slow.test, pid $pp)"
	# A moment after fork the child may not have reached exec yet.
	wait_for 5 grep -q tlsgate-probe "/proc/$pp/comm" 2>/dev/null
	st=$(cat "/proc/$pp/status" 2>/dev/null)
	diag "$(grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs)' <<<"$st" | tr '\t\n' ' ')"
	field() { awk -v k="$1:" '$1 == k { $1 = ""; print substr($0, 2) }' <<<"$st"; }
	check "the probe's uid is $PUSER's, real, effective, saved and fs" \
		[ "$(field Uid)" = "$PUID $PUID $PUID $PUID" ]
	check "its gid is $PUSER's group" [ "$(field Gid)" = "$PGID $PGID $PGID $PGID" ]
	check "no supplementary groups" [ -z "$(field Groups)" ]
	for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
		check "$cap is empty" [ "$(field $cap)" = 0000000000000000 ]
	done
	check "no_new_privs is set" [ "$(field NoNewPrivs)" = 1 ]
	fds=$(for f in /proc/"$pp"/fd/*; do readlink "$f"; done 2>/dev/null | sort | uniq -c | tr '\n' ' ')
	diag "probe fds: $fds"
	check "none of the daemon's BPF maps or programs" world_not grep -q 'anon_inode:bpf' <<<"$fds"
	check "the daemon itself still runs as root (it holds the kernel side)" \
		[ "$(awk '$1 == "Uid:" { print $3 }' /proc/"$GWPID"/status)" = 0 ]
fi
check "tlsgatectl stats names the probe user" \
	[ "$(world_stats 'j["probes"]["user"]')" = "$PUID" ]
check "the store is the probe group's, mode 0660" \
	[ "$(stat -c '%g %a' "$DB")" = "$PGID 660" ]
world_ctl probe dane-ee.test >/dev/null
has_dane() { [ "$(sql "select verdict from probe_results where domain='dane-ee.test' order by id desc limit 1")" = dane ]; }
if wait_for 60 has_dane; then
	ok "the unprivileged probe stored its result (dane-ee.test: dane)"
else
	not_ok "the unprivileged probe stored its result (dane-ee.test: dane)"
	grep -E 'probe' "$WORLD_DIR/gw/tlsgated.log" | tail -8 | sed 's/^/# /'
fi
check "no probe failed to store or to drop its privileges" \
	world_not grep -qE "could not be stored|could not give up|could not be executed" \
	"$WORLD_DIR/gw/tlsgated.log"

# --- 2. slow control clients --------------------------------------------------
CTL=$(world_control)
$WORLD_PY tests/e2e/slow_control_client.py "$CTL" 40 drip >"$WORLD_DIR/drip.out" 2>&1 &
drip=$!
$WORLD_PY tests/e2e/slow_control_client.py "$CTL" 40 silent >"$WORLD_DIR/silent.out" 2>&1 &
silent=$!
sleep 2
t0=$SECONDS
id=$(world_send user@tls.test "through the gateway while control clients dawdle")
f=$(world_wait_delivered mx-tls "$id" 20)
diag "delivered after $((SECONDS - t0)) s: ${f:-not within 20 s}"
check "a message goes through within 20 s while slow control clients are connected" [ -n "$f" ]
t1=$(date +%s%N)
out=$(timeout 5 "$WORLD_TLSGATECTL" --control "$CTL" stats --json 2>&1)
ms=$((($(date +%s%N) - t1) / 1000000))
diag "tlsgatectl stats answered in $ms ms"
check "tlsgatectl stats answers within 3 s meanwhile" \
	[ "$ms" -lt 3000 -a -n "$(world_json 'j["control"]["timed_out"]' <<<"$out" 2>/dev/null)" ]
wait "$drip" "$silent"
diag "drip: $(cat "$WORLD_DIR/drip.out"); silent: $(cat "$WORLD_DIR/silent.out")"
check "the daemon dropped the dawdling clients at their deadline" \
	[ "$(world_stats 'j["control"]["timed_out"]')" -ge 2 ]
check "tlsgated is still running" kill -0 "$GWPID"

done_testing
