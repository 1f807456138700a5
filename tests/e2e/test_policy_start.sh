#!/bin/bash
# End-to-end: starting with a policy key but a policy that cannot be
# applied (issue 20 item 4). An operator who gives a key and a policy wants
# secure mode; the daemon must never run without it quietly.
#  1. no last good policy saved, --policy broken: tlsgated refuses to start
#     (non-zero exit, one line that says why) and leaves nothing attached.
#  2. a good policy: starts with it (serial 5).
#  3. restarted with a broken --policy: runs on the last good one (serial
#     5), says so loudly in its log, and the stats carry the refusal.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/e2e/lib.sh

[ "$(id -u)" = 0 ] || { echo "Bail out! needs root"; exit 1; }
policy_keys
world_trap
trap 'world_down >/dev/null 2>&1; rm -rf "$POL"' EXIT
world_up || { echo "Bail out! world_up failed"; exit 1; }
cat >"$POL/good.json" <<-EOF2
	{ "policy_version": 1, "serial": 5, "expires": "2099-01-01T00:00:00Z",
	  "secure_mode": { "sender_domains": [ { "domain": "secure.world.test", "subdomains": false } ] } }
EOF2
policy_sign "$POL/good.json" 5 2099-01-01T00:00:00Z
printf '{ "policy_version": 1, "serial": 6, "expires": ' >"$POL/broken.json"
policy_sign "$POL/broken.json" 6 2099-01-01T00:00:00Z
LOG=$WORLD_DIR/gw/tlsgated.log

# 1.
if world_gw_start --policy-key "$POL/pub.key" --policy "$POL/broken.json" 2>/dev/null; then
	not_ok "1. a broken policy and nothing saved: tlsgated refuses to start"
	world_gw_stop
else
	ok "1. a broken policy and nothing saved: tlsgated refuses to start"
fi
check "1. ... and says why" grep -q "refusing to start: the policy .*broken.json could not be applied" "$LOG"
check "1. ... and leaves no tagger attached" \
	world_not eval "world_exec gw tc filter show dev inside ingress | grep -q bpf"

# 2.
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/good.json" ||
	{ echo "Bail out! tlsgated did not start with a good policy"; exit 1; }
check "2. a good policy: in force (serial 5)" [ "$(world_stats 'j["policy"]["serial"]')" = 5 ]
world_gw_stop

# 3.
world_gw_start --policy-key "$POL/pub.key" --policy "$POL/broken.json" ||
	{ echo "Bail out! tlsgated did not start on the last good policy"; exit 1; }
check "3. a broken policy with a last good one saved: runs on serial 5" \
	[ "$(world_stats 'j["policy"]["serial"]')" = 5 ]
check "3. ... says so loudly in its log" grep -q "RUNNING ON THE LAST GOOD POLICY (serial 5" "$LOG"
check "3. ... and the stats carry the refusal" \
	grep -q broken.json <<<"$(world_stats 'j["policy"].get("last_refusal", "")')"
world_gw_stop

done_testing
