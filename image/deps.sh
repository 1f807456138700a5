#!/bin/sh
# Install the build-host packages that `make image` and `make image-test`
# need (kept apart from tests/lib/deps.sh: QEMU and OVMF are large and only
# the image targets use them). Non-interactive and idempotent.
set -eu

PKGS="
 debootstrap debian-archive-keyring e2fsprogs dosfstools mtools fdisk
 systemd-boot-efi qemu-utils qemu-system-x86 ovmf
"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "image deps: all packages present"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "image deps: missing:$missing; run as root to install them" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
echo "image deps: installed$missing"
