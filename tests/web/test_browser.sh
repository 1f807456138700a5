#!/bin/bash
# The status page in a real browser: headless Chromium (Debian package) in
# the gateway's namespace loads http://127.0.0.1:8025/ from tlsgated while
# the test world carries mail. From the DOM it dumps, the destinations'
# classes (icons), the counters and the events shown must match the store
# and the daemon; a screenshot goes to build/test-artifacts/.
#
# How this fails when it should: a page whose script does not run (CSP,
# syntax error, an external asset) stays in data-state="loading" with
# empty tables; a page that shows a class other than the store's, or
# misses the block event, fails the comparisons.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh

CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ "$(id -u)" = 0 ] || { echo "Bail out! needs root"; exit 1; }
[ -n "$CHROMIUM" ] || { echo "Bail out! chromium missing (make deps)"; exit 1; }
"$WORLD_TLSGATED" --help 2>&1 | grep -q -- '--web-token-file' ||
	{ echo "Bail out! tlsgated has no --web options yet"; exit 1; }

ART=$WORLD_BUILD/test-artifacts
mkdir -p "$ART"
world_trap
world_up || { echo "Bail out! world_up failed"; exit 1; }
STORE=$WORLD_DIR/gw/tlsgate.db
world_gw_start --store "$STORE" --web 127.0.0.1:8025 ||
	{ echo "Bail out! tlsgated did not start"; exit 1; }
sql() { sqlite3 -readonly "$STORE" "$1"; }
now=$(date +%s)
# What passive DNS learning records for the transport-mapped domains.
sqlite3 "$STORE" "INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES
	('198.51.100.20', 'mx-tls.world.test', 'tls.test', 0, $((now + 3600))),
	('198.51.100.30', 'mx-plain.world.test', 'plain.test', 0, $((now + 3600)))"

id1=$(world_send user@tls.test "browser: TLS")
id2=$(world_send user@plain.test "browser: plaintext")
check "mail to tls.test delivered" [ -n "$(world_wait_delivered mx-tls "$id1" 30)" ]
check "mail to plain.test delivered" [ -n "$(world_wait_delivered mx-plain "$id2" 30)" ]
# A downgrade towards the TLS-history MX: blocked, an event and a lock.
world_exec in python3 - <<-'EOF' >/dev/null 2>&1
	import smtplib
	s = smtplib.SMTP("198.51.100.20", 25, "in.world.test", timeout=20)
	s.sendmail("sender@in.world.test", ["user@tls.test"], b"Subject: no STARTTLS\r\n\r\nx\r\n")
EOF
sleep 1
check "the store has the block event" [ "$(sql "SELECT count(*) FROM events WHERE kind = 'block'")" -ge 1 ]

# Mail keeps flowing while the browser looks.
(
	end=$((SECONDS + 40))
	while [ $SECONDS -lt $end ]; do
		world_send user@plain.test "browser: background" >/dev/null 2>&1
		sleep 2
	done
) &
traffic=$!

profile=$(mktemp -d /tmp/tlsgate-chromium.XXXXXX)
chrome() {
	world_exec gw timeout -k 5 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update --disable-sync \
		--disable-dev-shm-usage --user-data-dir="$profile" --window-size=1280,2400 \
		--run-all-compositor-stages-before-draw --virtual-time-budget=8000 "$@" \
		http://127.0.0.1:8025/ 2>"$ART/chromium.log"
}
chrome --dump-dom >"$ART/status-page.html"
check "Chromium dumped the page" [ -s "$ART/status-page.html" ]
chrome --screenshot="$ART/status-page.png" >/dev/null
check "a screenshot was saved ($ART/status-page.png)" [ -s "$ART/status-page.png" ]
kill "$traffic" 2>/dev/null
wait "$traffic" 2>/dev/null
rm -rf "$profile"

# The DOM as data: python reads the dump and prints KEY=VALUE lines.
dom=$(python3 - "$ART/status-page.html" <<-'EOF'
	import sys
	from html.parser import HTMLParser
	class P(HTMLParser):
	    def __init__(self):
	        super().__init__()
	        self.out, self.cur, self.text = {}, None, {}
	        self.dest, self.events, self.locks = {}, [], []
	    def handle_starttag(self, tag, attrs):
	        a = dict(attrs)
	        if tag == "body":
	            self.out["state"] = a.get("data-state")
	        if a.get("id", "").startswith("count-"):
	            self.cur = a["id"]
	            self.text[self.cur] = ""
	        if tag == "tr" and "dest" in (a.get("class") or "").split():
	            self.dest[a.get("data-domain")] = a.get("data-class")
	            self.row = a.get("data-domain")
	        if tag == "span" and "badge" in (a.get("class") or ""):
	            self.out.setdefault("badges", []).append(a.get("data-class"))
	            self.out.setdefault("titles", []).append(a.get("title", ""))
	        if tag == "tr" and "event" in (a.get("class") or "").split():
	            self.events.append((a.get("data-id"), a.get("data-kind")))
	        if tag == "tr" and a.get("class") == "lock":
	            self.locks.append(a.get("data-mx"))
	    def handle_endtag(self, tag):
	        if tag == "span":
	            self.cur = None
	    def handle_data(self, d):
	        if self.cur:
	            self.text[self.cur] += d
	p = P()
	p.feed(open(sys.argv[1], encoding="utf-8").read())
	print("state=%s" % p.out.get("state"))
	for k, v in p.text.items():
	    print("%s=%s" % (k, v.strip().replace(",", "").replace(".", "").replace("\u00a0", "")))
	for d, c in p.dest.items():
	    print("dest_%s=%s" % (d, c))
	print("events=%d" % len(p.events))
	print("event_first=%s" % (p.events[0][0] if p.events else ""))
	print("event_blocks=%d" % sum(1 for e in p.events if e[1] == "block"))
	print("locks=%s" % ",".join(p.locks))
	t = [t for t in p.out.get("titles", []) if "mx-tls.world.test" in t]
	print("hover_tls=%s" % (t[0].replace("\n", " | ") if t else ""))
EOF
)
v() { sed -n "s/^$1=//p" <<<"$dom" | head -1; }
diag "page: state=$(v state) flows=$(v count-flows) blocked=$(v count-blocked) events=$(v events) locks=$(v locks)"
check "the page's script ran and loaded everything (data-state=ready)" [ "$(v state)" = ready ]

# Classes: what the page shows is what the store says for each domain's MX.
lvl_class() { case $1 in 3) echo dane ;; 2) echo tls ;; 1) echo plaintext ;; *) echo unknown ;; esac; }
for dom_mx in tls.test:mx-tls.world.test plain.test:mx-plain.world.test; do
	d=${dom_mx%%:*} mx=${dom_mx#*:}
	want=$(lvl_class "$(sql "SELECT level FROM tls_history WHERE mx = '$mx'")")
	check "$d is shown as '$want' (store level of $mx)" [ "$(v "dest_$d")" = "$want" ]
done
check "the hover text of tls.test names its MX and TLS version" \
	grep -q 'MX mx-tls.world.test: TLS.*TLSv1\.[23]' <<<"$(v hover_tls)"

# Counters: between the daemon's values just before and just after.
flows_now=$(world_stats 'j["flows"]["total"]')
flows_page=$(v count-flows)
diag "flows: page $flows_page, daemon now $flows_now"
check "the flows counter shown is the daemon's (taken while mail flowed)" \
	world_in_range "${flows_page:-x}" 3 $((flows_now + 1))
blocks_daemon=$(world_stats 'sum(j["verdicts"]["blocked_by_reason"].values())')
check "the blocked counter shown is the daemon's ($blocks_daemon)" [ "$(v count-blocked)" = "$blocks_daemon" ]
check "the passed-in-plaintext counter is at least 1" world_in_range "$(v count-passed-plain)" 1

# Events and locks: the store's newest, the block among them, the lock.
n_events=$(sql "SELECT min(count(*), 50) FROM events")
check "as many events are listed as the store has (up to 50)" world_in_range "$(v events)" "$n_events" $((n_events + 25))
check "the block event is listed" world_in_range "$(v event_blocks)" 1
check "the locked MX is listed with a release action" [ "$(v locks)" = mx-tls.world.test ]
grep -q 'class="release"' "$ART/status-page.html"
check "the release button is there" [ $? -eq 0 ]
check "the page loaded nothing from elsewhere" \
	world_not grep -qE '(src|href)="(https?:)?//' "$ART/status-page.html"

done_testing
