#!/bin/bash
# make install into a DESTDIR: the files land where the units and the image
# expect them, placeholders are filled, the units pass systemd-analyze
# verify, the default config names only options tlsgated knows, and the
# helpers (NIC naming, policy key check) do what their contracts say.
# Fast; part of `make test` (the boot test is tests/image/boot_test.sh).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/tests/lib/tap.sh"
[ -x "$ROOT/build/tlsgated" ] || { echo "Bail out! build/tlsgated missing: run make"; exit 1; }
T=$(mktemp -d /tmp/tlsgate-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
D=$T/dest

out=$(make -s -C "$ROOT" install DESTDIR="$D" 2>&1)
check "make install DESTDIR=... succeeds" [ $? -eq 0 ]
for f in usr/sbin/tlsgated usr/bin/tlsgatectl usr/bin/tlsgate-probe usr/bin/tlsgate-replay \
	usr/lib/tlsgate/tlsgate-setup usr/lib/tlsgate/tlsgate-ifname; do
	check "$f installed, executable" [ -x "$D/$f" ]
done
for f in lib/systemd/system/tlsgated.service lib/systemd/system/tlsgate-setup.service \
	etc/tlsgate/tlsgated.conf etc/tlsgate/interfaces etc/profile.d/tlsgate.sh \
	usr/share/doc/tlsgate/README.md; do
	check "$f installed" [ -s "$D/$f" ]
done
check "no NIC renaming unless asked (no udev rule)" \
	[ ! -e "$D/lib/udev/rules.d/76-tlsgate-ifnames.rules" ]
check "the status page on loopback by default, not a documentation address" \
	grep -q '^web = 127\.0\.0\.1:8025$' "$D/etc/tlsgate/tlsgated.conf"
D2=$(mktemp -d)
make -s -C "$ROOT" install DESTDIR="$D2" TLSGATE_IFNAMES=1 >/dev/null 2>&1
check "TLSGATE_IFNAMES=1: the udev rule that renames NICs is installed" \
	[ -s "$D2/lib/udev/rules.d/76-tlsgate-ifnames.rules" ]
rm -rf "$D2"
check "no @PLACEHOLDER@ left in installed files" \
	bash -c '[ -d "$1/usr" ] && ! grep -rl "@[A-Z]*DIR@" "$1"' _ "$D"
check "the unit starts the installed daemon with the installed config" \
	grep -q '^ExecStart=!/usr/sbin/tlsgated -c /etc/tlsgate/tlsgated.conf ' "$D/lib/systemd/system/tlsgated.service"
# Each user tlsgated switches to by default is one the install creates.
sysusers=$D/usr/lib/sysusers.d/tlsgate.conf
help_users=$("$ROOT/build/tlsgated" --help 2>&1 | grep -o '(default tlsgate[a-z-]*)' | tr -d '()' |
	awk '{ print $2 }' | sort -u | xargs)
check "tlsgated --help names four default users ($help_users)" [ "$(wc -w <<<"$help_users")" = 4 ]
for u in $help_users; do
	check "the installed sysusers.d file creates $u" grep -q "^u $u " "$sysusers"
done
check "the state directory is prepared before the daemon, as root (--prepare-files)" \
	grep -q '^ExecStartPre=+/usr/sbin/tlsgated --prepare-files -c /etc/tlsgate/tlsgated.conf ' \
	"$D/lib/systemd/system/tlsgated.service"
check "... and writable in the unit's sandbox" \
	grep -q '^ReadWritePaths=-/var/lib/tlsgate$' "$D/lib/systemd/system/tlsgated.service"
check "no tlsgate-bpffs.service any more (PID 1 mounts /sys/fs/bpf)" \
	[ ! -e "$D/lib/systemd/system/tlsgate-bpffs.service" ]

# A second install keeps an edited config.
echo "# edited" >>"$D/etc/tlsgate/tlsgated.conf"
make -s -C "$ROOT" install DESTDIR="$D" >/dev/null 2>&1
check "reinstall keeps an edited tlsgated.conf" grep -q '^# edited' "$D/etc/tlsgate/tlsgated.conf"

# PREFIX moves binaries and the paths in the units with them.
make -s -C "$ROOT" install DESTDIR="$T/p" PREFIX=/opt/tg >/dev/null 2>&1
check "PREFIX=/opt/tg: binary and unit paths follow" bash -c \
	'[ -x "$1/opt/tg/sbin/tlsgated" ] && grep -q "^ExecStart=!/opt/tg/sbin/tlsgated " "$1/lib/systemd/system/tlsgated.service"' _ "$T/p"

# systemd-analyze verify: unknown keys, bad values, missing executables.
if command -v systemd-analyze >/dev/null; then
	v=$(cd "$D" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$D" \
		"$D"/lib/systemd/system/tlsgate*.service 2>&1 |
		grep -v -e 'not found' -e 'Failed to create .*/start' -e 'Command /bin/[a-z]* is not executable')
	check "systemd-analyze verify finds nothing in the units" [ -z "$v" ]
	[ -z "$v" ] || diag "$v"
fi

# Every name in the default config is a long option of tlsgated.
help=$("$ROOT/build/tlsgated" --help 2>&1)
bad=""
for name in $(sed -n 's/^[[:space:]]*\([a-z-]*\)[[:space:]]*=.*/\1/p' "$D/etc/tlsgate/tlsgated.conf"); do
	grep -q -- "--$name " <<<"$help" || bad="$bad $name"
done
check "default tlsgated.conf names only options in tlsgated --help${bad:+ (unknown:$bad)}" [ -z "$bad" ]
check "the probe path in the config is the installed probe" \
	grep -q '^probe = /usr/bin/tlsgate-probe$' "$D/etc/tlsgate/tlsgated.conf"

# NIC naming helper: by MAC, case-insensitive, comments ignored.
printf '# c\ninside  52:54:00:AA:00:01\n\noutside 52:54:00:aa:00:02 extra\n' >"$T/ifs"
ifname() { TLSGATE_INTERFACES=$T/ifs "$D/usr/lib/tlsgate/tlsgate-ifname" "$@"; }
check "ifname: MAC (lower case) -> inside" [ "$(ifname 52:54:00:aa:00:01)" = inside ]
check "ifname: MAC (upper case) -> outside" [ "$(ifname 52:54:00:AA:00:02)" = outside ]
check "ifname: unknown MAC -> no name, exit 1" bash -c '! out=$("$@") && [ -z "$out" ]' _ \
	env TLSGATE_INTERFACES="$T/ifs" "$D/usr/lib/tlsgate/tlsgate-ifname" 52:54:00:aa:00:03
check "ifname: no argument -> exit 1" bash -c '! "$@"' _ \
	env TLSGATE_INTERFACES="$T/ifs" "$D/usr/lib/tlsgate/tlsgate-ifname"
check "ifname: a comment line never matches" bash -c '! "$@"' _ \
	env TLSGATE_INTERFACES="$T/ifs" "$D/usr/lib/tlsgate/tlsgate-ifname" c

# Policy key check: no key -> no policy-key line (secure mode off), key -> both.
setup() { TLSGATE_ISSUE=$T/issue.d TLSGATE_ETC=$T/etc TLSGATE_RUN=$T/run TLSGATE_STATE=$T/state "$D/usr/lib/tlsgate/tlsgate-setup" "$@"; }
mkdir -p "$T/etc"
setup config
check "no key: policy.conf sets no policy-key" bash -c '! grep -q "^policy" "$1"' _ "$T/run/policy.conf"
msg=$(setup boot)
check "no key: boot says secure mode is OFF" grep -q "NO POLICY KEY: secure mode is OFF" <<<"$msg"
check "first boot creates the state directory" [ -d "$T/state" ]
check "the login prompt says it too" grep -q "secure mode is OFF" "$T/issue.d/tlsgate.issue"
echo "untrusted comment: x" >"$T/etc/policy.pub"
setup config
check "key present: policy.conf names key and policy" bash -c \
	'grep -qx "policy-key = $2/policy.pub" "$1" && grep -qx "policy = $2/policy.json" "$1"' _ "$T/run/policy.conf" "$T/etc"
msg=$(setup boot)
check "key present: boot says it is installed" grep -q "policy key .* installed" <<<"$msg"
check "tlsgate-setup with no mode fails" bash -c '! "$@" 2>/dev/null' _ "$D/usr/lib/tlsgate/tlsgate-setup"
done_testing
