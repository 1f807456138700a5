#!/bin/bash
# Build the tlsgate appliance image: a bootable Debian 12 disk (GPT, an EFI
# system partition with systemd-boot, an ext4 root) as raw and qcow2, with
# no loop mounts: the root file system is made by `mkfs.ext4 -d`, the ESP
# by mkfs.vfat + mtools on a file, and both are copied into the disk file
# at the offsets sfdisk was given.
#
# Usage: image/build.sh [OUTDIR]   (default build/image; run as root)
# Environment: MIRROR (default: the Debian mirror apt uses here),
#   IMAGE_KERNEL (stable: bookworm's 6.1, default; backports: 6.12),
#   IMAGE_SIZE_MB (default 2048), IMAGE_CACHE (default build/image-cache).
#
# The debootstrap tree is cached under IMAGE_CACHE, keyed by the package
# list, so a rebuild only copies it and installs tlsgate again. Outputs:
# OUTDIR/tlsgate.raw, OUTDIR/tlsgate.qcow2, OUTDIR/rootfs/ (the tree that
# went into the image; kept for inspection).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${1:-$ROOT/build/image}
CACHE=${IMAGE_CACHE:-$ROOT/build/image-cache}
SIZE_MB=${IMAGE_SIZE_MB:-2048}
ESP_MB=200
SUITE=bookworm

log() { echo "image: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, file ownership)"
for t in debootstrap mkfs.ext4 mkfs.vfat mcopy mmd sfdisk qemu-img; do
	command -v "$t" >/dev/null || die "$t missing: run image/deps.sh"
done
SDBOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -r "$SDBOOT" ] || die "$SDBOOT missing: run image/deps.sh"
for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
	[ -x "$ROOT/build/$b" ] || die "build/$b missing: run make first"
done

# The mirror apt uses on this host (deb822 or one-line format).
default_mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ { print u; exit }')
	[ -n "$m" ] || m=$(grep -hE '^deb +[^ ]+ +bookworm +' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '{ print $2; exit }')
	echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(default_mirror)}

# What runs on the appliance: systemd, a kernel with BPF/BTF/clsact/NFQUEUE,
# iptables and iproute2, tlsgate's run-time libraries (from ldd), and the
# DNSSEC trust anchor the probe's resolver reads (dns-root-data).
PACKAGES="systemd systemd-sysv udev dbus linux-image-amd64 initramfs-tools kmod
 iproute2 iptables procps less ca-certificates
 libbpf1 libelf1 libnetfilter-queue1 libmnl0 libwolfssl35 libunbound8
 libsqlite3-0 libjansson4 libmicrohttpd12 libpcap0.8 libidn2-0 libseccomp2 zlib1g
 dns-root-data"

# --- 1. the debootstrap tree, cached -----------------------------------
key=$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-12)
BASE=$CACHE/base-$key
if [ ! -e "$BASE/.complete" ]; then
	log "debootstrap $SUITE from $MIRROR into $BASE (cached for later builds)"
	rm -rf "$BASE.tmp"
	mkdir -p "$CACHE"
	debootstrap --variant=minbase --include="$(echo $PACKAGES | tr ' ' ',')" \
		"$SUITE" "$BASE.tmp" "$MIRROR" >"$CACHE/debootstrap-$key.log" 2>&1 ||
		{ tail -30 "$CACHE/debootstrap-$key.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap-$key.log)"; }
	# The tree must not keep the package cache (size) or the build host's
	# resolver config.
	rm -rf "$BASE.tmp"/var/cache/apt/archives/*.deb "$BASE.tmp"/var/lib/apt/lists/*
	touch "$BASE.tmp/.complete"
	rm -rf "$BASE"
	mv "$BASE.tmp" "$BASE"
fi
log "base tree: $BASE"
[ "${IMAGE_STAGE:-}" != base ] || exit 0

# --- 1b. optionally the kernel from bookworm-backports, cached -----------
# IMAGE_KERNEL=backports puts bookworm-backports' kernel (6.12) in place of
# bookworm's 6.1. Neither loads the tagger as of this writing: both
# verifiers reject tagger.bpf.c:198 ("math between pkt pointer and register
# with unbounded min value"), which only newer kernels accept.
if [ "${IMAGE_KERNEL:-stable}" = backports ]; then
	KBASE=$CACHE/kernel-$key-bpo
	if [ ! -e "$KBASE/.complete" ]; then
		log "backports kernel into $KBASE (cached)"
		rm -rf "$KBASE.tmp"
		cp -a "$BASE" "$KBASE.tmp"
		echo "deb $MIRROR $SUITE-backports main" >"$KBASE.tmp/etc/apt/sources.list.d/backports.list"
		cp /etc/resolv.conf "$KBASE.tmp/etc/resolv.conf"
		# The package scripts need /proc (a plain mount, no loop device).
		mount -t proc proc "$KBASE.tmp/proc"
		trap 'umount "$KBASE.tmp/proc" 2>/dev/null' EXIT
		old_kernels=$(chroot "$KBASE.tmp" dpkg-query -W -f='${Package}\n' 'linux-image-[0-9]*' 2>/dev/null)
		if ! {
			chroot "$KBASE.tmp" apt-get -q update &&
				DEBIAN_FRONTEND=noninteractive chroot "$KBASE.tmp" apt-get -y -q --no-install-recommends \
					-t "$SUITE-backports" install linux-image-amd64 &&
				DEBIAN_FRONTEND=noninteractive chroot "$KBASE.tmp" apt-get -y -q purge $old_kernels &&
				chroot "$KBASE.tmp" apt-get clean
		} >"$CACHE/kernel-$key.log" 2>&1; then
			tail -30 "$CACHE/kernel-$key.log" >&2
			die "backports kernel install failed (log: $CACHE/kernel-$key.log)"
		fi
		umount "$KBASE.tmp/proc"
		trap - EXIT
		rm -rf "$KBASE.tmp"/var/lib/apt/lists/* "$KBASE.tmp/etc/resolv.conf"
		touch "$KBASE.tmp/.complete"
		rm -rf "$KBASE"
		mv "$KBASE.tmp" "$KBASE"
	fi
	BASE=$KBASE
	log "kernel tree: $BASE"
fi

# --- 2. the image's root tree ------------------------------------------
R=$OUT/rootfs
mkdir -p "$OUT"
rm -rf "$R" "$OUT"/*.img "$OUT"/tlsgate.raw "$OUT"/tlsgate.qcow2
log "root tree: $R"
cp -a "$BASE" "$R"
rm -f "$R/.complete"
# debootstrap copied the build host's resolver; the appliance's is its own
# (tlsgated.conf probe-resolver).
rm -f "$R/etc/resolv.conf"
DESTDIR=$R PREFIX=/usr BUILD=$ROOT/build TLSGATE_IFNAMES=1 "$HERE/install.sh" >/dev/null
# The appliance serves its page on its management address (rootfs'
# 10-tlsgate-mgmt.network); a plain install keeps it on loopback.
sed -i 's|^web = 127\.0\.0\.1:8025$|web = 203.0.113.1:8025|' "$R/etc/tlsgate/tlsgated.conf"
cp -a "$HERE/rootfs/." "$R/"

ROOT_UUID=${IMAGE_ROOT_UUID:-$(cat /proc/sys/kernel/random/uuid)}
cat >"$R/etc/fstab" <<-EOT
	UUID=$ROOT_UUID / ext4 defaults,errors=remount-ro 0 1
EOT
# A machine-id is made on first boot (and ConditionFirstBoot holds then).
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"

# The console root password: IMAGE_ROOT_PASSWORD, else a random one written
# next to the image. There is no remote login (no sshd).
PW=${IMAGE_ROOT_PASSWORD:-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')}
hash=$(printf '%s' "$PW" | openssl passwd -6 -stdin)
sed -i "s|^root:[^:]*:|root:$hash:|" "$R/etc/shadow"
printf '%s\n' "$PW" >"$OUT/root-password"
chmod 600 "$OUT/root-password"

systemctl --root="$R" enable systemd-networkd.service systemd-networkd-wait-online.service \
	tlsgate-setup.service tlsgated.service serial-getty@ttyS0.service \
	>/dev/null 2>&1 || die "systemctl enable failed"
# "Online" means the management address is configured (the status page
# binds to it); a missing inside/outside link must not hold the boot.
mkdir -p "$R/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$R/etc/systemd/system/systemd-networkd-wait-online.service.d/tlsgate.conf" <<-'EOT'
	[Service]
	ExecStart=
	ExecStart=/lib/systemd/systemd-networkd-wait-online --timeout=30
EOT

KERNEL=$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)
INITRD=$(ls "$R"/boot/initrd.img-* | sort -V | tail -1)
[ -r "$KERNEL" ] && [ -r "$INITRD" ] || die "no kernel or initrd in the tree"

# --- 3. file systems and disk, without loop mounts ---------------------
root_mb=$((SIZE_MB - ESP_MB - 2))
log "ext4 root ($root_mb MiB, UUID $ROOT_UUID)"
mkfs.ext4 -q -F -d "$R" -U "$ROOT_UUID" -L tlsgate-root "$OUT/root.img" "${root_mb}M"

log "EFI system partition ($ESP_MB MiB, systemd-boot)"
mkfs.vfat -C -n TLSGATE-ESP "$OUT/esp.img" $((ESP_MB * 1024)) >/dev/null
mmd -i "$OUT/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$OUT/esp.img" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$OUT/esp.img" "$KERNEL" ::/vmlinuz
mcopy -i "$OUT/esp.img" "$INITRD" ::/initrd.img
printf 'default tlsgate.conf\ntimeout 2\nconsole-mode keep\n' >"$OUT/loader.conf"
cat >"$OUT/tlsgate.conf" <<-EOT
	title   tlsgate appliance ($(basename "$KERNEL"))
	linux   /vmlinuz
	initrd  /initrd.img
	options root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8
EOT
mcopy -i "$OUT/esp.img" "$OUT/loader.conf" ::/loader/loader.conf
mcopy -i "$OUT/esp.img" "$OUT/tlsgate.conf" ::/loader/entries/tlsgate.conf
rm -f "$OUT/loader.conf" "$OUT/tlsgate.conf"

log "disk (GPT: ESP + root)"
raw=$OUT/tlsgate.raw
truncate -s "${SIZE_MB}M" "$raw"
esp_start=2048
esp_sectors=$((ESP_MB * 2048))
root_start=$((esp_start + esp_sectors))
root_sectors=$((root_mb * 2048))
sfdisk -q "$raw" <<-EOT
	label: gpt
	start=$esp_start, size=$esp_sectors, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"
	start=$root_start, size=$root_sectors, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"
EOT
dd if="$OUT/esp.img" of="$raw" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
dd if="$OUT/root.img" of="$raw" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
rm -f "$OUT/esp.img" "$OUT/root.img"
qemu-img convert -O qcow2 "$raw" "$OUT/tlsgate.qcow2"
log "done: $raw, $OUT/tlsgate.qcow2 (console root password in $OUT/root-password)"
