#!/bin/bash
# The status page in a real browser: headless Chromium (Debian package) in
# the gateway's namespace loads http://127.0.0.1:8025/ from tlsgated while
# the test world carries mail, driven over the DevTools protocol
# (tests/web/cdp_page.py) at desktop size with a mouse and at phone width
# (390x844) with touch. From the live page and its DOM: the destinations'
# classes (icons), the counters and the events shown must match the store
# and the daemon; dates are ISO 8601; every class has its own icon; the
# legend says "unknown"; rows show that they have details and open them on
# a click and on a tap; looked-up destinations are told apart from those
# mail went to; blocked and locked show per destination; the events' What
# says each thing once; nothing is wider than a phone. Screenshots go to
# build/test-artifacts/status-page.png and status-page-phone.png.
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
STORE=$WORLD_DIR/gw/state/tlsgate.db
world_gw_start --store "$STORE" --web 127.0.0.1:8025 ||
	{ echo "Bail out! tlsgated did not start"; exit 1; }
sql() { sqlite3 -readonly "$STORE" "$1"; }
now=$(date +%s)
# What passive DNS learning records for the transport-mapped domains.
sqlite3 "$STORE" "INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES
	('198.51.100.20', 'mx-tls.world.test', 'tls.test', 0, $((now + 3600))),
	('198.51.100.30', 'mx-plain.world.test', 'plain.test', 0, $((now + 3600)))"
# What tlsgate-probe --db writes for a domain only looked up (TLS) and for
# one whose certificate does not match its TLSA records; a policy that
# expires on 2099-01-01 (noon UTC: that day in every time zone).
sqlite3 "$STORE" "INSERT INTO probe_results(time, domain, class, mx, addr, verdict, tls_version,
		cipher, dane, reason) VALUES
	($now, 'lookedup.test', 'tls', 'mx.lookedup.test', '203.0.113.50', 'tls', 'TLSv1.3',
	 'TLS_AES_256_GCM_SHA384', NULL, 'TLS; no DNSSEC-validated TLSA records'),
	($now, 'danefail.test', 'unknown', 'mx.danefail.test', '203.0.113.51', 'dane-fail', 'TLSv1.2',
	 'ECDHE-RSA-AES256-GCM-SHA384', 'no-match', 'DANE verification failed: no-match'),
	-- tls.test's MX as probed (no DANE): the gateway holds the first
	-- STARTTLS to a named MX until its DANE state is known, and this
	-- world has no DNS for a probe
	($now, 'tls.test', 'tls', 'mx-tls.world.test', '198.51.100.20', 'tls', 'TLSv1.3',
	 'TLS_AES_256_GCM_SHA384', NULL, 'TLS; no DNSSEC-validated TLSA records');
	INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES
	('203.0.113.50', 'mx.lookedup.test', 'lookedup.test', 1, $((now + 3600))),
	('203.0.113.51', 'mx.danefail.test', 'danefail.test', 1, $((now + 3600)));
	INSERT INTO tls_history(mx, level, first_seen, last_seen, first_tls, last_tls, tls_count)
	VALUES ('mx.lookedup.test', 2, $now, $now, $now, $now, 1),
	       ('mx.danefail.test', 2, $now, $now, $now, $now, 1);
	INSERT INTO policy_applied(serial, sha256, key_id, applied_at, expires)
	VALUES (7, '$(printf '%064d' 0)', 'RWQtest', $now, 4070952000)"

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

look() { # NAME WIDTH HEIGHT [touch]
	world_exec gw timeout -k 5 120 python3 tests/web/cdp_page.py "$CHROMIUM" \
		http://127.0.0.1:8025/ "$ART" "$@"
}
desk=$(look status-page 1280 900)
phone=$(look status-page-phone 390 844 touch)
check "Chromium showed the page (desktop DOM saved)" [ -s "$ART/status-page.html" ]
check "a screenshot was saved ($ART/status-page.png)" [ -s "$ART/status-page.png" ]
check "a phone-width screenshot was saved ($ART/status-page-phone.png)" [ -s "$ART/status-page-phone.png" ]
kill "$traffic" 2>/dev/null
wait "$traffic" 2>/dev/null

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

# Classes: what the page shows is what the store says for each domain's MX
# (a locked MX shows locked, whatever its level).
lvl_class() { case $1 in 3) echo dane ;; 2) echo tls ;; 1) echo plaintext ;; *) echo unknown ;; esac; }
for dom_mx in tls.test:mx-tls.world.test plain.test:mx-plain.world.test; do
	d=${dom_mx%%:*} mx=${dom_mx#*:}
	want=$(lvl_class "$(sql "SELECT level FROM tls_history WHERE mx = '$mx'")")
	[ "$(sql "SELECT locked FROM tls_history WHERE mx = '$mx'")" = 1 ] && want=locked
	check "$d is shown as '$want' (store level and lock of $mx)" [ "$(v "dest_$d")" = "$want" ]
done
check "danefail.test (probe: certificate does not match TLSA) is 'dane-failing', not green" \
	[ "$(v dest_danefail.test)" = dane-failing ]
check "the hover text of tls.test names its MX, the lock and the TLS version" \
	grep -q 'MX mx-tls.world.test: locked.*TLS TLSv1\.[23]' <<<"$(v hover_tls)"

# The page as a person sees it (cdp_page.py's facts, desktop then phone).
pv() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
js() { python3 -c "import json, sys; j = json.loads(sys.argv[1]); $2" "$(pv "$1" "$3")"; }
for run in desk phone; do
	f=${!run}
	check "$run: the page's script ran and loaded everything" [ "$(pv "$f" state)" = '"ready"' ]
	diag "$run: times $(pv "$f" times | cut -c1-120)"
	diag "$run: details $(pv "$f" opened | cut -c1-160)"
	check "$run: dates are ISO 8601 (YYYY-MM-DD HH:MM:SS), at least 5 of them" \
		js "$f" 'sys.exit(not (j == [] ))' isoBad
	check "$run: no date like 1/1/99 anywhere on the page" js "$f" 'sys.exit(j != [])' slashDates
	check "$run: times shown" js "$f" 'sys.exit(len(j) < 5)' times
	check "$run: the policy's expiry 2099-01-01 shows as 2099-01-01" \
		js "$f" 'sys.exit("Expires2099-01-01 " not in j)' policy
	check "$run: six legend entries, each with its own icon (DANE ok and TLS differ)" \
		js "$f" 'p = {e["cls"]: e["path"] for e in j}; sys.exit(len(set(p.values())) != 6 or p["dane"] == p["tls"])' legend
	check "$run: the legend reads 'unknown' for the unknown class" \
		js "$f" 'sys.exit(not any(e["cls"] == "unknown" and "unknown" in e["text"] for e in j))' legend
	check "$run: the legend says each label once (no 'TLS? TLS?')" \
		js "$f" 'import re; sys.exit(any(re.search(r"(DANE ok|TLS\?|no TLS|TLS) \1", e["text"]) for e in j))' legend
	check "$run: a visible hint says rows have details (click, tap, hover)" \
		js "$f" 'sys.exit(not ("tap" in j and "hover" in j))' hint
	check "$run: every destination row has a details button and hover text" \
		js "$f" 'sys.exit(not j or not all(r["more"] and r["title"] > 0 for r in j.values()))' rows
	check "$run: tls.test and plain.test: mail went there" \
		js "$f" 'sys.exit(not (j["tls.test"]["seen"] == j["plain.test"]["seen"] == "mail"))' rows
	check "$run: lookedup.test: only looked up, and says so" \
		js "$f" 'sys.exit(not (j["lookedup.test"]["seen"] == "looked-up" and j["lookedup.test"]["seenText"] == "looked up"))' rows
	check "$run: tls.test shows locked (with the reason) and blocked" \
		js "$f" 's = j["tls.test"]["state"]; sys.exit(not (s.startswith("locked:") and "blocked" in s))' rows
	check "$run: plain.test shows neither" js "$f" 'sys.exit(j["plain.test"]["state"] != "\u2013")' rows
	check "$run: the events' What says each thing once (a block: 'blocked (temporary)')" \
		js "$f" 'import re; sys.exit(not j or any(re.search(r"\bblock\b.*block", e["what"]) for e in j) or not any(e["kind"] == "block" and e["what"] == "blocked (temporary)" for e in j))' what
	check "$run: tls.test's details open (${run/desk/mouse click}${run/phone/ tap}) and name its MX" \
		js "$f" 'sys.exit(not (j["hiddenBefore"] and not j["hidden"] and j["shown"] and j["expanded"] == "true" and "MX mx-tls.world.test" in j["text"]))' opened
done
check "desktop: hovering a row highlights it (its details are in the hover text)" \
	[ "$(pv "$desk" hovered)" = '"tls.test"' ]
check "phone: nothing is wider than the 390 px screen (also with details open)" \
	js "$phone" 'sys.exit(not (j <= 390))' scrollWidth
check "phone: ... after the tap too" js "$phone" 'sys.exit(not (j <= 390))' tap_scroll_width

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
