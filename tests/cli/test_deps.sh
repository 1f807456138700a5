#!/bin/bash
# tests/lib/deps.sh leaves the host's services alone (issue 20): it never
# stops or disables a service, and the daemons of the packages it installs
# are kept from starting by a policy-rc.d that exists only while apt-get
# runs. Nothing is installed here: dpkg-query, apt-get, debconf-set-selections
# and id are fakes on PATH, and the policy-rc.d path is a temporary file
# (TLSGATE_POLICY_RC_D).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
DEPS=$PWD/tests/lib/deps.sh

T=$(mktemp -d /tmp/tlsgate-deps-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin"

# Fakes. dpkg-query: every package installed except those in $T/missing.
cat >"$T/bin/dpkg-query" <<'EOF'
#!/bin/sh
for a; do p=$a; done
if grep -qx "$p" "$FAKE_DIR/missing" 2>/dev/null; then
	echo "dpkg-query: no packages found matching $p" >&2
	exit 1
fi
printf 'install ok installed'
EOF
# apt-get: logs its arguments; at "install" it asks the policy-rc.d in
# force about a few services (as invoke-rc.d and deb-systemd-invoke do)
# and logs the answers; exits with $FAKE_APT_STATUS.
cat >"$T/bin/apt-get" <<'EOF'
#!/bin/sh
echo "apt-get $*" >>"$FAKE_DIR/apt.log"
case " $* " in
*" install "*)
	for s in nsd nsd.service unbound.service unbound-resolvconf.service cron ssh.service; do
		if [ -x "$TLSGATE_POLICY_RC_D" ]; then
			"$TLSGATE_POLICY_RC_D" "$s" start >/dev/null 2>&1
			echo "$s $?" >>"$FAKE_DIR/policy.log"
		else
			echo "$s none" >>"$FAKE_DIR/policy.log"
		fi
	done
	;;
esac
exit "${FAKE_APT_STATUS:-0}"
EOF
cat >"$T/bin/debconf-set-selections" <<'EOF'
#!/bin/sh
cat >>"$FAKE_DIR/debconf.log"
EOF
cat >"$T/bin/id" <<'EOF'
#!/bin/sh
[ "${1:-}" = -u ] && { echo 0; exit 0; }
exec /usr/bin/id "$@"
EOF
chmod 755 "$T/bin"/*

# run_deps CASE: deps.sh with the fakes; its output in $T/CASE.out.
run_deps() {
	local c=$1
	mkdir -p "$T/$c"
	: >"$T/$c/apt.log"
	: >"$T/$c/policy.log"
	: >"$T/$c/debconf.log"
	[ -e "$T/$c/missing" ] || : >"$T/$c/missing"
	FAKE_DIR=$T/$c TLSGATE_POLICY_RC_D=$T/$c/policy-rc.d PATH="$T/bin:$PATH" \
		timeout 60 sh "$DEPS" >"$T/$c.out" 2>&1
}

# 1. Nothing in deps.sh stops or disables a service.
code=$(grep -v '^[[:space:]]*#' "$DEPS")
bad='systemctl|--now|invoke-rc\.d|deb-systemd-invoke|(^|[;&|(`[:space:]])service +[^ ]+ +(stop|restart|start)'
if echo "$code" | grep -qE "$bad"; then
	not_ok "deps.sh stops or disables no service"
	echo "$code" | grep -nE "$bad" >&2
else
	ok "deps.sh stops or disables no service (no systemctl, --now, invoke-rc.d, service X stop)"
fi

# 2. Everything installed: exit 0, no apt-get, no policy-rc.d, no debconf.
run_deps all
rc=$?
check "all installed: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "all installed: no apt-get run" [ ! -s "$T/all/apt.log" ]
check "all installed: no debconf answer changed" [ ! -s "$T/all/debconf.log" ]
check "all installed: no policy-rc.d written" [ ! -e "$T/all/policy-rc.d" ]
check "all installed: says so" grep -q "all packages present" "$T/all.out"

# 3. nsd missing, no policy-rc.d before.
mkdir -p "$T/one"
echo nsd >"$T/one/missing"
run_deps one
rc=$?
check "nsd missing: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "nsd missing: apt-get update waits for the dpkg lock" \
	grep -qE '^apt-get -o DPkg::Lock::Timeout=[1-9][0-9]* update' "$T/one/apt.log"
check "nsd missing: apt-get install of nsd alone waits for the dpkg lock" \
	grep -qE '^apt-get -o DPkg::Lock::Timeout=[1-9][0-9]* install .* nsd$' "$T/one/apt.log"
check "nsd missing: policy-rc.d refuses nsd (101)" grep -qx 'nsd 101' "$T/one/policy.log"
check "nsd missing: policy-rc.d refuses nsd.service (101)" grep -qx 'nsd.service 101' "$T/one/policy.log"
check "nsd missing: policy-rc.d allows cron (0)" grep -qx 'cron 0' "$T/one/policy.log"
check "nsd missing: policy-rc.d allows unbound.service (installed: 0)" \
	grep -qx 'unbound.service 0' "$T/one/policy.log"
check "nsd missing: policy-rc.d removed afterwards" [ ! -e "$T/one/policy-rc.d" ]
check "nsd missing: no backup left behind" [ ! -e "$T/one/policy-rc.d.tlsgate-saved" ]
check "nsd missing: Postfix's debconf answer untouched (installed)" \
	bash -c "! grep -q postfix '$T/one/debconf.log'"

# 4. unbound and postfix missing, a policy-rc.d of the host's own before
#    (refuses ssh only): it stays in force for the others and comes back.
mkdir -p "$T/own"
printf 'unbound\npostfix\n' >"$T/own/missing"
printf '#!/bin/sh\n# the host'"'"'s own\n[ "$1" = ssh.service ] && exit 101\nexit 104\n' >"$T/own/policy-rc.d"
chmod 755 "$T/own/policy-rc.d"
cp -p "$T/own/policy-rc.d" "$T/own.orig"
run_deps own
rc=$?
check "unbound+postfix missing: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "unbound+postfix missing: unbound.service refused" grep -qx 'unbound.service 101' "$T/own/policy.log"
check "unbound+postfix missing: unbound-resolvconf.service refused" \
	grep -qx 'unbound-resolvconf.service 101' "$T/own/policy.log"
check "unbound+postfix missing: the host's policy still decides ssh (101)" \
	grep -qx 'ssh.service 101' "$T/own/policy.log"
check "unbound+postfix missing: the host's policy still decides cron (104)" \
	grep -qx 'cron 104' "$T/own/policy.log"
check "unbound+postfix missing: the host's policy-rc.d restored as it was" \
	cmp -s "$T/own/policy-rc.d" "$T/own.orig"
check "unbound+postfix missing: restored one still executable" [ -x "$T/own/policy-rc.d" ]
check "unbound+postfix missing: Postfix preseeded with No configuration" \
	grep -q 'postfix/main_mailer_type select No configuration' "$T/own/debconf.log"

# 5. apt-get fails: deps.sh fails, and the policy-rc.d is removed all the same.
mkdir -p "$T/fail"
echo nsd >"$T/fail/missing"
FAKE_APT_STATUS=100 run_deps fail
rc=$?
check "apt-get fails: deps.sh fails (got $rc)" [ "$rc" -ne 0 ]
check "apt-get fails: policy-rc.d removed all the same" [ ! -e "$T/fail/policy-rc.d" ]

# 6. A policy-rc.d that a killed run left behind is undone by the next run.
mkdir -p "$T/stale"
: >"$T/stale/missing"
printf '#!/bin/sh\n# written by tlsgate tests/lib/deps.sh while it installs: nsd\nexit 101\n' \
	>"$T/stale/policy-rc.d"
echo nsd >"$T/stale/missing"
printf '#!/bin/sh\nexit 0\n' >"$T/stale/policy-rc.d.tlsgate-saved"
chmod 755 "$T/stale/policy-rc.d" "$T/stale/policy-rc.d.tlsgate-saved"
cp -p "$T/stale/policy-rc.d.tlsgate-saved" "$T/stale.orig"
run_deps stale
check "stale policy-rc.d of a killed run: the saved one is back" cmp -s "$T/stale/policy-rc.d" "$T/stale.orig"
check "stale policy-rc.d of a killed run: cron allowed during the install" \
	grep -qx 'cron 0' "$T/stale/policy.log"

# 7. Not root: names what is missing, installs nothing, exit 1.
mkdir -p "$T/user"
echo nsd >"$T/user/missing"
: >"$T/user/apt.log"
FAKE_DIR=$T/user TLSGATE_POLICY_RC_D=$T/user/policy-rc.d PATH="$T/bin:$PATH" \
	sh -c 'id() { echo 1000; }; . "$0"' "$DEPS" >"$T/user.out" 2>&1
rc=$?
check "not root: exit 1 (got $rc)" [ "$rc" -eq 1 ]
check "not root: names the missing package" grep -q "missing: nsd" "$T/user.out"
check "not root: no apt-get" [ ! -s "$T/user/apt.log" ]

done_testing
