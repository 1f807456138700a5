#!/bin/bash
# What a descriptor opened as root still allows after tlsgated's inspector
# drops to uid 65534 (issue 19; the findings are in docs/privsep.md,
# "Measured on this kernel"). build/privsep/fdcheck opens BPF maps, a ring
# buffer, raw sockets and an NFQUEUE as root, drops, and tries each; this
# script runs it three times, each in a network namespace of its own
# (tgpriv-PID-MODE): "root" (no drop: the baseline that shows each check
# can succeed), "none" (no capabilities) and "net_admin" (CAP_NET_ADMIN
# only), prints the table and asserts every cell, so a kernel that
# changes any of them is seen.
#
# How this fails when it should: with FDCHECK_DROPPED=root the "none" and
# "net_admin" runs do not drop at all: every cell that needs a privilege
# then reads "ok" and fails (checked: 15 of 87 cells).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
BUILD=${BUILD:-build}
FDCHECK=$BUILD/privsep/fdcheck
[ -x "$FDCHECK" ] || { echo "Bail out! $FDCHECK missing: run make"; exit 1; }
if [ "$(id -u)" != 0 ]; then
	echo "ok 1 # SKIP needs root (network namespaces, bpffs, NFQUEUE)"
	echo "1..1"
	exit 0
fi
QUEUE=7 PORT=5300
MODES="root none net_admin"
# What each check gives after the drop: root none net_admin. ENOMSG: a
# ring record did not come; ETIMEDOUT: nothing answered within a second.
EXPECTED="
process.setuid_0             ok      EPERM   EPERM
bpf.array.update             ok      ok      ok
bpf.array.lookup             ok      ok      ok
bpf.array.delete             EINVAL  EINVAL  EINVAL
bpf.hash.update              ok      ok      ok
bpf.hash.lookup              ok      ok      ok
bpf.hash.next_key            ok      ok      ok
bpf.hash.delete              ok      ok      ok
bpf.obj_get.root_pin         ok      EACCES  EACCES
bpf.obj_get.owned_pin        ok      ok      ok
bpf.map_create               ok      EPERM   EPERM
bpf.ringbuf.mmap_before      ok      ok      ok
bpf.ringbuf.mmap_after       ok      ok      ok
raw.ipv4.sendto              ok      ok      ok
raw.ipv6.sendto              ok      ok      ok
raw.new_socket               ok      EPERM   EPERM
nfq.receive                  ok      ok      ok
nfq.verdict                  ok      EPERM   ok
nfq.config.bind_other        ok      EPERM   ok
nfq.config.maxlen            ok      EPERM   ok
nfq.socket.nft_newtable      ok      EPERM   ok
nfq.new_socket.bind          ok      EPERM   ok
rtnl.new_socket.add_addr     ok      EPERM   ok
sock.netlink_no_enobufs      ok      ok      ok
sock.so_rcvbuf               ok      ok      ok
sock.so_rcvbufforce          ok      EPERM   ok
misc.proc_self_status        ok      ok      ok
misc.timerfd_signalfd_epoll  ok      ok      ok
misc.sqlite_own_file         ok      ok      ok
"

T=$(mktemp -d /tmp/tgpriv.XXXXXX)
PIN_BASE=/sys/fs/bpf/tgpriv-$$
cleanup() {
	local m
	for m in $MODES; do ip netns del "tgpriv-$$-$m" 2>/dev/null; done
	rm -rf "$PIN_BASE" "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Namespaces and pins of runs whose script is gone.
for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep '^tgpriv-'); do
	pid=${ns#tgpriv-}
	pid=${pid%%-*}
	kill -0 "$pid" 2>/dev/null || ip netns del "$ns"
done
for d in /sys/fs/bpf/tgpriv-*; do
	[ -d "$d" ] || continue
	kill -0 "${d##*-}" 2>/dev/null || rm -rf "$d"
done

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || { echo "Bail out! no bpffs"; exit 1; }
mkdir -p "$PIN_BASE" && chmod 755 "$T" || { echo "Bail out! $PIN_BASE"; exit 1; }

for m in $MODES; do
	ns=tgpriv-$$-$m
	run_as=$m
	[ "$m" = root ] || run_as=${FDCHECK_DROPPED:-$m}
	if ! ip netns add "$ns" || ! ip -n "$ns" link set lo up ||
		! nsenter --net="/run/netns/$ns" iptables -A OUTPUT -o lo -p udp --dport "$PORT" \
			-j NFQUEUE --queue-num "$QUEUE"; then
		echo "Bail out! namespace $ns"
		exit 1
	fi
	mkdir -p "$PIN_BASE/$m" "$T/$m" && chown 65534:65534 "$T/$m" || { echo "Bail out! $T/$m"; exit 1; }
	# nsenter, not "ip netns exec": the host's bpffs stays visible.
	timeout -k 5 60 nsenter --net="/run/netns/$ns" "$FDCHECK" "$run_as" "$PIN_BASE/$m" "$T/$m" \
		"$QUEUE" "$PORT" >"$T/$m.out" 2>"$T/$m.err"
	rc=$?
	check "fdcheck $m ran to its end (status $rc)" [ "$rc" -eq 0 ]
	[ "$rc" -eq 0 ] || sed 's/^/# /' "$T/$m.err"
	diag "$m: $(awk -F'\t' '$1 == "process.ids" { print $3 }' "$T/$m.out")"
done

# result MODE CHECK: what fdcheck printed for CHECK in MODE.
result() { awk -F'\t' -v c="$2" '$1 == c { print $2; exit }' "$T/$1.out"; }
detail() { awk -F'\t' -v c="$2" '$1 == c { print $3; exit }' "$T/$1.out"; }

diag "| check | root | none | CAP_NET_ADMIN | detail (none) |"
diag "|---|---|---|---|---|"
while read -r name e_root e_none e_admin; do
	[ -n "$name" ] || continue
	r_root=$(result root "$name") r_none=$(result none "$name") r_admin=$(result net_admin "$name")
	diag "| $name | ${r_root:--} | ${r_none:--} | ${r_admin:--} | $(detail none "$name") |"
	check "$name as root: $e_root (got ${r_root:-nothing})" [ "$r_root" = "$e_root" ]
	check "$name without capabilities: $e_none (got ${r_none:-nothing})" [ "$r_none" = "$e_none" ]
	check "$name with CAP_NET_ADMIN only: $e_admin (got ${r_admin:-nothing})" [ "$r_admin" = "$e_admin" ]
done <<<"$EXPECTED"
# Every check fdcheck made is in the table above.
extra=$(cut -f1 "$T"/*.out | sort -u | grep -vxF process.ids |
	grep -vxF -f <(awk 'NF { print $1 }' <<<"$EXPECTED"))
check "every check of fdcheck has an expected row${extra:+ (not: $extra)}" [ -z "$extra" ]
done_testing
