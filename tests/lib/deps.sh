#!/bin/sh
# Install every Debian package that tlsgate's build, tests, demo and
# benchmarks need. Non-interactive and idempotent; Postfix is installed with
# "No configuration" so the system's own mail setup is left untouched (the
# test world runs its own Postfix instances with their own config dirs).
set -eu

PKGS="
 make gcc clang llvm pkg-config libclang-rt-14-dev
 libbpf-dev bpftool libelf-dev zlib1g-dev
 libnetfilter-queue-dev libmnl-dev
 libwolfssl-dev libunbound-dev libsqlite3-dev
 libmicrohttpd-dev libjansson-dev libcmocka-dev libpcap-dev
 iptables iproute2 tcpdump bc tshark procps psmisc sqlite3 openssl ca-certificates
 postfix swaks socat python3
 nsd ldnsutils unbound bind9-dnsutils dns-root-data
 minisign
 libidn2-dev xxd chromium wrk
 groff-base
"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all packages present"
	exit 0
fi

[ "$(id -u)" = 0 ] || { echo "deps: missing:$missing; run as root to install them" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
# Debian starts the packaged daemons; the test world starts its own.
for svc in nsd unbound postfix; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	fi
done
echo "deps: installed$missing"
