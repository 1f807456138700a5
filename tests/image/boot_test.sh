#!/bin/bash
# make image-test: boot the appliance image in QEMU between the test world's
# namespaces and send mail through it. Prints TAP. Not part of `make test`
# (a TCG boot takes minutes); see README.md, "Running the appliance image".
#
#   in (192.0.2.10) --eth0==inside-- [gw ns: br-in ] --tap tgi-- VM inside  192.0.2.1
#   sw (mx-tls, mx-plain) --p-gw==outside-- [gw ns: br-out] --tap tgo-- VM outside 198.51.100.1
#   gw ns: tap tgm 203.0.113.2 (the management host) -- VM mgmt 203.0.113.1:8025
#
# The world's "gw" namespace becomes a switch plus the management host: its
# own addresses go, the VM takes them. QEMU runs inside it, so the world's
# teardown (by namespace, by PID) removes it too; it is also killed by its
# PID on exit. The VM boots a throw-away qcow2 overlay of the image, so each
# run is a first boot.
# Usage: tests/image/boot_test.sh [IMAGE_DIR]   (default build/image)
# Environment: IMAGE_BOOT_TIMEOUT (s, default 600), IMAGE_KEEP=1 keeps the
# run directory's console log after the run (path printed).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
IMG=${1:-$ROOT/build/image}
BOOT_TMO=${IMAGE_BOOT_TIMEOUT:-600}
# shellcheck source=../lib/tap.sh
. "$ROOT/tests/lib/tap.sh"
# shellcheck source=../world/lib.sh
. "$ROOT/tests/world/lib.sh"

[ "$(id -u)" = 0 ] || { echo "Bail out! image-test needs root"; exit 1; }
[ -r "$IMG/tlsgate.qcow2" ] && [ -r "$IMG/root-password" ] ||
	{ echo "Bail out! no image in $IMG: run make image"; exit 1; }
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -r "$OVMF_CODE" ] || { echo "Bail out! $OVMF_CODE missing: run image/deps.sh"; exit 1; }
PW=$(cat "$IMG/root-password")

QEMU_PID=
VMDIR=
cleanup() {
	if [ -n "$QEMU_PID" ]; then
		kill -TERM "$QEMU_PID" 2>/dev/null
		for _ in $(seq 1 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$QEMU_PID" 2>/dev/null
	fi
	if [ -n "$VMDIR" ] && [ "${IMAGE_KEEP:-0}" = 1 ]; then
		mkdir -p "$ROOT/build/image-test" && cp "$VMDIR/console.log" "$ROOT/build/image-test/console.log" 2>/dev/null
		echo "# console log kept: $ROOT/build/image-test/console.log"
	fi
	world_down >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

world_up || { echo "Bail out! world_up failed"; exit 1; }
diag "world $WORLD_ID ($WORLD_DIR)"
VMDIR=$WORLD_DIR/vm
mkdir -p "$VMDIR"
gw() { world_exec gw "$@"; }

# The gw namespace becomes two bridges and the management host.
gw ip addr flush dev inside && gw ip addr flush dev outside &&
	gw sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 &&
	gw ip link add br-in type bridge && gw ip link add br-out type bridge &&
	gw ip link set inside master br-in && gw ip link set outside master br-out &&
	gw ip link set br-in up && gw ip link set br-out up &&
	for t in tgi tgo tgm; do gw ip tuntap add dev $t mode tap || exit 1; done &&
	gw ip link set tgi master br-in && gw ip link set tgo master br-out &&
	gw ip link set tgi up && gw ip link set tgo up && gw ip link set tgm up &&
	gw ip addr add 203.0.113.2/24 dev tgm ||
	{ echo "Bail out! could not wire the gw namespace"; exit 1; }

qemu-img create -q -f qcow2 -b "$IMG/tlsgate.qcow2" -F qcow2 "$VMDIR/disk.qcow2" ||
	{ echo "Bail out! qemu-img create failed"; exit 1; }
cp "$OVMF_VARS" "$VMDIR/vars.fd"
accel=tcg
if [ -w /dev/kvm ] && [ -r /dev/kvm ]; then accel=kvm; fi
diag "booting the image with $accel"
setsid nsenter --net="/run/netns/$(world_ns gw)" qemu-system-x86_64 \
	-machine q35,accel=$accel -cpu max -smp 2 -m 1024 -display none -no-user-config \
	-drive if=pflash,format=raw,readonly=on,file="$OVMF_CODE" \
	-drive if=pflash,format=raw,file="$VMDIR/vars.fd" \
	-drive if=virtio,format=qcow2,file="$VMDIR/disk.qcow2" \
	-netdev tap,id=in,ifname=tgi,script=no,downscript=no -device virtio-net-pci,netdev=in,mac=52:54:00:7e:50:01 \
	-netdev tap,id=out,ifname=tgo,script=no,downscript=no -device virtio-net-pci,netdev=out,mac=52:54:00:7e:50:02 \
	-netdev tap,id=mg,ifname=tgm,script=no,downscript=no -device virtio-net-pci,netdev=mg,mac=52:54:00:7e:50:03 \
	-chardev socket,id=ser,path="$VMDIR/serial.sock",server=on,wait=off,logfile="$VMDIR/console.log" \
	-serial chardev:ser -monitor none \
	</dev/null >"$VMDIR/qemu.log" 2>&1 &
QEMU_PID=$!

# Booted: the status page answers on the management address.
web=http://203.0.113.1:8025
start=$SECONDS
booted=0
while [ $((SECONDS - start)) -lt "$BOOT_TMO" ]; do
	kill -0 "$QEMU_PID" 2>/dev/null || break
	if gw curl -sf -m 3 -o /dev/null "$web/"; then booted=1; break; fi
	sleep 3
done
if [ "$booted" = 1 ]; then
	ok "image boots ($accel) and serves its status page on the management address in $((SECONDS - start)) s"
else
	not_ok "status page on $web within ${BOOT_TMO} s"
	diag "qemu: $(tail -5 "$VMDIR/qemu.log")"
	tail -40 "$VMDIR/console.log" | sed 's/^/# console: /'
	if kill -0 "$QEMU_PID" 2>/dev/null; then
		# Why the daemon is not up, from inside (a verifier's refusal, say).
		"$HERE/console.py" "$VMDIR/serial.sock" "$PW" \
			"journalctl -u tlsgated --no-pager -n 60 | cut -c1-400" 120 2>&1 | sed 's/^/# vm journal: /'
	fi
	IMAGE_KEEP=1
	done_testing
	exit 1
fi

vm() { "$HERE/console.py" "$VMDIR/serial.sock" "$PW" "$*" 120; }

check "the console says secure mode is off without a policy key" \
	grep -q "NO POLICY KEY: secure mode is OFF" "$VMDIR/console.log"
page=$(gw curl -sf -m 5 "$web/")
check "status page is tlsgate's" grep -qi "tlsgate" <<<"$page"
links=$(vm ip -br link)
diag "$(tr '\n' ';' <<<"$links")"
check "NICs named inside, outside, mgmt from /etc/tlsgate/interfaces" \
	bash -c 'for n in inside outside mgmt; do grep -q "^$n " <<<"$1" || exit 1; done' _ "$links"
fw=$(vm sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding | tr -d ' \r\n')
diag "forwarding (v4 v6): $fw"
check "IP forwarding on (v4, v6)" [ "$fw" = 11 ]
svc=$(vm systemctl show -p ActiveState,SubState,NRestarts,Type tlsgated.service | tr '\n' ' ')
diag "tlsgated.service: $svc"
check "tlsgated.service active (notify: ready), not restarted" \
	bash -c '[[ $1 == *ActiveState=active* && $1 == *NRestarts=0* && $1 == *Type=notify* ]]' _ "$svc"
check "the state directory exists" vm test -d /var/lib/tlsgate -a -s /var/lib/tlsgate/tlsgate.db

# Mail from the sending MTA through the VM to the receiving MTAs.
for to in user@plain.test user@tls.test user@tls6.test; do
	node=$(world_node_for "$to")
	id=$(world_send "$to" "through the appliance") || { not_ok "send to $to"; continue; }
	f=$(world_wait_delivered "$node" "$id" 120)
	check "mail to $to delivered through the VM to $node, intact" world_intact "$f" "$id"
done
check "mx-tls received it over TLS" grep -q "TLS connection established from.*192.0.2.10\|TLS connection established from.*2001:db8:1::10" "$WORLD_DIR/mx-tls/maillog"
stats=$(gw curl -sf -m 5 "$web/api/v1/stats")
diag "stats: $(head -c 600 <<<"$stats")"
flows=$(vm tlsgatectl flows --json)
nflows=$(world_json 'len(j)' <<<"$flows" 2>/dev/null)
check "the gateway tracked the SMTP flows (tlsgatectl flows: ${nflows:-none})" world_in_range "${nflows:-x}" 3
check "the status page's stats API answers from the host" world_json 'True' <<<"$stats"

# Reload (SIGHUP) keeps it running.
vm systemctl reload tlsgated.service >/dev/null
sleep 2
check "systemctl reload keeps tlsgated active" vm systemctl is-active -q tlsgated.service

sec=$(vm systemd-analyze security --no-pager tlsgated.service)
score=$(sed -n 's/.*Overall exposure level for tlsgated.service: \([0-9.]*\).*/\1/p' <<<"$sec")
diag "systemd-analyze security tlsgated.service: ${score:-?} ($(tail -1 <<<"$sec"))"
check "systemd-analyze security scores tlsgated.service (${score:-?})" [ -n "$score" ]
done_testing
