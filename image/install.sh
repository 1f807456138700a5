#!/bin/sh
# Install tlsgate (what `make install` runs). DESTDIR-aware:
#   DESTDIR=/tmp/stage PREFIX=/usr BUILD=build image/install.sh
# Binaries: PREFIX/sbin/tlsgated, PREFIX/bin/{tlsgatectl,tlsgate-probe,
# tlsgate-replay}; helpers in PREFIX/lib/tlsgate; systemd units in
# /lib/systemd/system; udev rule in /lib/udev/rules.d; the probe's user in
# /usr/lib/sysusers.d/tlsgate.conf; configuration in
# /etc/tlsgate (existing files are kept, never overwritten); docs in
# PREFIX/share/doc/tlsgate; manual pages, uncompressed, in
# PREFIX/share/man/man8/{tlsgated,tlsgatectl,tlsgate-probe}.8 and
# PREFIX/share/man/man1/tlsgate-replay.1. The state directory
# /var/lib/tlsgate is made by the units (StateDirectory=, tlsgate-setup),
# not here.
set -eu
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
BUILD=${BUILD:-build}
SBINDIR=$PREFIX/sbin
BINDIR=$PREFIX/bin
LIBDIR=$PREFIX/lib/tlsgate
DOCDIR=$PREFIX/share/doc/tlsgate
MANDIR=$PREFIX/share/man
SYSCONFDIR=/etc
UNITDIR=/lib/systemd/system
UDEVDIR=/lib/udev/rules.d
SYSUSERSDIR=/usr/lib/sysusers.d

for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
	[ -x "$BUILD/$b" ] || { echo "install: $BUILD/$b missing: run make" >&2; exit 1; }
done

# subst SRC DST MODE: install SRC with the @DIR@ placeholders filled in.
subst() {
	install -d "$(dirname "$2")"
	sed -e "s|@SBINDIR@|$SBINDIR|g" -e "s|@BINDIR@|$BINDIR|g" -e "s|@LIBDIR@|$LIBDIR|g" \
		-e "s|@DOCDIR@|$DOCDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" "$1" >"$2.tmp"
	chmod "$3" "$2.tmp"
	mv "$2.tmp" "$2"
}

install -D -m 0755 "$BUILD/tlsgated" "$DESTDIR$SBINDIR/tlsgated"
for b in tlsgatectl tlsgate-probe tlsgate-replay; do
	install -D -m 0755 "$BUILD/$b" "$DESTDIR$BINDIR/$b"
done
subst image/lib/tlsgate-setup "$DESTDIR$LIBDIR/tlsgate-setup" 0755
subst image/lib/tlsgate-ifname "$DESTDIR$LIBDIR/tlsgate-ifname" 0755
# Renaming NICs to "inside"/"outside" by MAC address is for the appliance
# (image/build.sh sets TLSGATE_IFNAMES=1); on an existing host it is only
# done when asked, and tlsgated.conf names the host's own interfaces.
[ "${TLSGATE_IFNAMES:-0}" != 1 ] ||
	subst image/lib/76-tlsgate-ifnames.rules "$DESTDIR$UDEVDIR/76-tlsgate-ifnames.rules" 0644
# The probe's user (created at boot by systemd-sysusers; now too, when
# installing onto the running system).
install -D -m 0644 image/lib/tlsgate.sysusers "$DESTDIR$SYSUSERSDIR/tlsgate.conf"
[ -n "$DESTDIR" ] || ! command -v systemd-sysusers >/dev/null ||
	systemd-sysusers "$SYSUSERSDIR/tlsgate.conf" || true
for u in tlsgated.service tlsgate-setup.service; do
	subst "image/systemd/$u" "$DESTDIR$UNITDIR/$u" 0644
done
# Gone: tlsgate-bpffs.service (root with CAP_SYS_ADMIN to mount what PID 1
# mounts anyway); an earlier install's copy and its enablement go too.
rm -f "$DESTDIR$UNITDIR/tlsgate-bpffs.service" \
	"$DESTDIR$SYSCONFDIR/systemd/system/sysinit.target.wants/tlsgate-bpffs.service"
install -d -m 0755 "$DESTDIR$SYSCONFDIR/tlsgate"
# tlsgate-setup.service may write only there (its sandbox).
install -d -m 0755 "$DESTDIR$SYSCONFDIR/issue.d"
[ -e "$DESTDIR$SYSCONFDIR/tlsgate/tlsgated.conf" ] ||
	subst image/etc/tlsgated.conf "$DESTDIR$SYSCONFDIR/tlsgate/tlsgated.conf" 0644
[ -e "$DESTDIR$SYSCONFDIR/tlsgate/interfaces" ] ||
	install -m 0644 image/etc/interfaces "$DESTDIR$SYSCONFDIR/tlsgate/interfaces"
install -D -m 0644 image/etc/profile.sh "$DESTDIR$SYSCONFDIR/profile.d/tlsgate.sh"
install -D -m 0644 README.md "$DESTDIR$DOCDIR/README.md"
install -D -m 0644 policy/README.md "$DESTDIR$DOCDIR/policy.md"
[ ! -r probe/README.md ] || install -D -m 0644 probe/README.md "$DESTDIR$DOCDIR/probe.md"
install -D -m 0644 web/README.md "$DESTDIR$DOCDIR/web.md"
install -D -m 0644 docs/DESIGN.md "$DESTDIR$DOCDIR/DESIGN.md"
install -D -m 0644 docs/datapath.md "$DESTDIR$DOCDIR/datapath.md"
install -D -m 0644 userspace/man/tlsgated.8 "$DESTDIR$MANDIR/man8/tlsgated.8"
install -D -m 0644 userspace/man/tlsgatectl.8 "$DESTDIR$MANDIR/man8/tlsgatectl.8"
install -D -m 0644 probe/tlsgate-probe.8 "$DESTDIR$MANDIR/man8/tlsgate-probe.8"
install -D -m 0644 userspace/man/tlsgate-replay.1 "$DESTDIR$MANDIR/man1/tlsgate-replay.1"
echo "install: tlsgate installed under ${DESTDIR:-/} (PREFIX=$PREFIX)"
