#!/bin/sh
# Install every Debian package that tlsgate's build, tests, demo and
# benchmarks need. Non-interactive and idempotent.
#
# It leaves the host's services alone: it never stops, disables or
# reconfigures a service, and the daemons of the packages it newly installs
# (nsd, unbound) are not started by their postinst either - a temporary
# policy-rc.d refuses exactly those services during the apt-get call (any
# policy-rc.d already there is kept in force for the others and put back
# afterwards). The test world runs its own nsd, unbound and Postfix
# instances in network namespaces with their own config dirs; it needs
# neither the system's instances nor their absence. Postfix, when newly
# installed, gets "No configuration" (it does not start and has no main.cf);
# an installed Postfix is not touched at all.
#
# Environment: TLSGATE_POLICY_RC_D, the policy-rc.d path (default
# /usr/sbin/policy-rc.d; for tests). APT_LOCK_TIMEOUT, seconds apt-get waits
# for the dpkg lock held by someone else, e.g. unattended-upgrades on a
# freshly booted machine (default 300).
set -eu

PKGS="
 make gcc clang llvm pkg-config libclang-rt-14-dev
 libbpf-dev bpftool libelf-dev zlib1g-dev
 libnetfilter-queue-dev libmnl-dev
 libwolfssl-dev libunbound-dev libsqlite3-dev
 libmicrohttpd-dev libjansson-dev libcmocka-dev libpcap-dev libseccomp-dev
 iptables iproute2 tcpdump bc tshark procps psmisc sqlite3 openssl ca-certificates
 postfix swaks socat python3
 nsd ldnsutils unbound bind9-dnsutils dns-root-data
 minisign gdb
 libidn2-dev xxd chromium wrk
 groff-base
"
POLICY_RC_D=${TLSGATE_POLICY_RC_D:-/usr/sbin/policy-rc.d}
POLICY_SAVED=$POLICY_RC_D.tlsgate-saved
POLICY_MARK="# written by tlsgate tests/lib/deps.sh"
LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# tlsgated's processes run as these system users (image/lib/tlsgate.sysusers,
# what an install creates): an idempotent step, before the packages.
# Without systemd-sysusers (a container without systemd): useradd, the same
# users (system, own group, no home, no login).
SYSUSERS=${TLSGATE_SYSUSERS:-systemd-sysusers}
SYSUSERS_CONF="$(cd "$(dirname "$0")/../.." && pwd)/image/lib/tlsgate.sysusers"
if [ "$(id -u)" = 0 ]; then
	for u in tlsgate tlsgate-probe tlsgate-web tlsgate-parent; do
		getent passwd "$u" >/dev/null && continue
		if command -v "$SYSUSERS" >/dev/null; then
			$SYSUSERS "$SYSUSERS_CONF" || true
		fi
		getent passwd "$u" >/dev/null ||
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin "$u" ||
			{ echo "deps: could not create the user $u" >&2; exit 1; }
	done
fi

missing=""
for p in $PKGS; do
	installed "$p" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all packages present"
	exit 0
fi

[ "$(id -u)" = 0 ] || { echo "deps: missing:$missing; run as root to install them" >&2; exit 1; }

# Puts back the policy-rc.d that was there before (or none).
policy_restore() {
	if [ -e "$POLICY_SAVED" ]; then
		mv -f "$POLICY_SAVED" "$POLICY_RC_D"
	elif [ -f "$POLICY_RC_D" ] && grep -qF "$POLICY_MARK" "$POLICY_RC_D"; then
		rm -f "$POLICY_RC_D"
	fi
}

# A run killed outright (SIGKILL) left its policy-rc.d: undo that first.
if [ -f "$POLICY_RC_D" ] && grep -qF "$POLICY_MARK" "$POLICY_RC_D"; then
	policy_restore
fi

# The services of the packages installed now may not start: "$1" is the
# init script or unit name (deb-systemd-invoke passes "nsd.service"), and a
# package's services are named after it (nsd; unbound, unbound-resolvconf;
# postfix, postfix@-); a "P-x" service of another package is refused as
# well, but only while P is being installed. Everything else is decided as
# before: by the policy-rc.d that was there, else allowed.
refuse=$missing
[ ! -e "$POLICY_RC_D" ] || cp -p "$POLICY_RC_D" "$POLICY_SAVED"
trap 'policy_restore' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
cat >"$POLICY_RC_D.tmp" <<-EOF
	#!/bin/sh
	$POLICY_MARK while it installs:$refuse
	# (removed again when it ends; the one that was here, if any, is in
	# $POLICY_SAVED meanwhile)
	name=\${1:-}
	name=\${name%.service}
	name=\${name%.socket}
	name=\${name%.timer}
	for p in $refuse; do
		case \$name in
		"\$p" | "\$p"-* | "\$p"@*) exit 101 ;;
		esac
	done
	[ ! -x "$POLICY_SAVED" ] || exec "$POLICY_SAVED" "\$@"
	exit 0
EOF
chmod 755 "$POLICY_RC_D.tmp"
mv -f "$POLICY_RC_D.tmp" "$POLICY_RC_D"

export DEBIAN_FRONTEND=noninteractive
# Preseed only what is installed now: an installed package's answers stay.
case " $missing " in
*" postfix "*) echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections ;;
esac
if ! installed wireshark-common; then
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
fi
apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" update -q
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" install -y -q --no-install-recommends $missing
echo "deps: installed$missing (no service started or stopped)"
