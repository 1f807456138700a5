#!/bin/bash
# The HTTP API of a running tlsgated in the test world (with DNSSEC), with
# real HTTP requests from the gateway's namespace:
# - recipient lookups answer with the class the store holds for the
#   domain's MX after real Postfix deliveries (TLS and plaintext), several
#   addresses per request, IDN and case folded;
# - an unknown domain schedules a real probe (tlsgate-probe through the
#   world's validating resolver) and a later lookup gives its class;
# - bad input (no '@', bad UTF-8, an IDN that is no name, too many or too
#   long addresses, SQL in the domain) is a 400 with a JSON error, and the
#   daemon keeps serving;
# - a STARTTLS downgrade towards a TLS-history MX is blocked and shows up
#   in /api/v1/events and /api/v1/locks; releasing it needs the bearer
#   token (401 without), then the lock is gone from the API and the store;
# - CORS only for the configured origin; /metrics counters agree with
#   "tlsgatectl stats"; the API listens only on 127.0.0.1, its thread at
#   nice 10 (mail first); at --web-rate a flood of lookups is answered at
#   that pace, every one of them;
# - tlsgatectl check/destinations/events/history/status over the API.
#
# How this fails when it should: a lookup that does not read the store or
# picks the strongest instead of the weakest MX gives the wrong class; a
# release without the token check unlocks on the first POST; a server bound
# to all addresses answers from the inside network.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/world/dns.sh

[ "$(id -u)" = 0 ] || { echo "Bail out! needs root"; exit 1; }
for b in "$WORLD_TLSGATED" "$WORLD_TLSGATECTL" "$WORLD_BUILD/tlsgate-probe"; do
	[ -x "$b" ] || { echo "Bail out! $b missing: run make"; exit 1; }
done
"$WORLD_TLSGATED" --help 2>&1 | grep -q -- '--web-token-file' ||
	{ echo "Bail out! tlsgated has no --web options yet"; exit 1; }

world_trap
world_up || { echo "Bail out! world_up failed"; exit 1; }
dns_up || { echo "Bail out! dns_up failed"; exit 1; }
diag "world $WORLD_ID ($WORLD_DIR)"
STORE=$WORLD_DIR/gw/state/tlsgate.db
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$TOKEN" >"$WORLD_DIR/gw/web.token"
chmod 600 "$WORLD_DIR/gw/web.token"
ORIGIN=https://webmail.world.test
world_gw_start --store "$STORE" --web 127.0.0.1:8025 --web-host status.world.test \
	--web-token-file "$WORLD_DIR/gw/web.token" \
	--web-cors "$ORIGIN" --probe-resolver "$DNS_REC4" --probe-trust-anchor "$DNS_DIR/root.ds" \
	--probe-arg=--transparent-zone --probe-arg=test. --probe-arg=--timeout --probe-arg=5 ||
	{ echo "Bail out! tlsgated did not start"; exit 1; }

API=http://127.0.0.1:8025
# api METHOD PATH [BODY] [HEADER...]: sets HTTP_STATUS, HTTP_HEADERS, HTTP_BODY.
api() {
	local out
	out=$(world_exec gw python3 tests/web/http_request.py "$1" "$API$2" "${@:3}" 2>&1) || {
		HTTP_STATUS=0 HTTP_HEADERS= HTTP_BODY=$out
		return 0
	}
	HTTP_STATUS=$(head -1 <<<"$out")
	HTTP_HEADERS=$(sed -n '2,/^$/p' <<<"$out")
	HTTP_BODY=$(sed '1,/^$/d' <<<"$out")
}
j() { world_json "$1" <<<"$HTTP_BODY" 2>/dev/null; }
sql() { sqlite3 -readonly "$STORE" "$1"; }
for i in $(seq 1 50); do
	api GET /api/v1/stats
	[ "$HTTP_STATUS" = 200 ] && break
	sleep 0.1
done
check "the API answers on 127.0.0.1:8025 in the gateway" [ "$HTTP_STATUS" = 200 ]
# Mail first: the status page is a process of its own whose serving
# threads (libmicrohttpd's) run at nice 10; the inspector (the packet path)
# at 0, so a flood of lookups takes what CPU mail leaves.
procs=$(world_ctl stats --json)
web_pid=$(world_json 'j["processes"]["web"]' <<<"$procs")
insp_pid=$(world_json 'j["processes"]["inspector"]' <<<"$procs")
web_nice=$(for t in /proc/$web_pid/task/*; do
	[ "$(cat "$t/comm")" != tlsgated ] && awk '{ print $19 }' "$t/stat"; done | sort -u | tr '\n' ' ')
check "the web threads run at nice 10, the packet path at 0 ($web_nice, inspector $insp_pid)" \
	[ "$web_nice" = "10 " -a "$(awk '{ print $19 }' /proc/$insp_pid/stat 2>/dev/null)" = 0 ] ||
	echo "# processes: $(world_json 'j["processes"]' <<<"$procs")"

# What passive DNS learning records for the world's transport-mapped domains
# (the sender's Postfix resolves nothing): address -> MX name -> domain.
# The name is one the world's DNS has in an unsigned zone (no DANE): the
# gateway holds the first STARTTLS to a named MX until its probe of that
# name tells the DANE state, and this one says "tls".
now=$(date +%s)
sql_w() { sqlite3 "$STORE" "$1"; }
sql_w "INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES
	('198.51.100.20', 'mx.unsigned.test', 'tls.test', 0, $((now + 3600))),
	('198.51.100.30', 'mx-plain.world.test', 'plain.test', 0, $((now + 3600)))"

# --- real mail makes history -----------------------------------------------
id1=$(world_send user@tls.test "web api: TLS")
id2=$(world_send user@plain.test "web api: plaintext")
f1=$(world_wait_delivered mx-tls "$id1" 30)
f2=$(world_wait_delivered mx-plain "$id2" 30)
check "mail to tls.test delivered" [ -n "$f1" ]
check "mail to plain.test delivered" [ -n "$f2" ]
sleep 1
tls_level=$(sql "SELECT level FROM tls_history WHERE mx = 'mx.unsigned.test'")
plain_level=$(sql "SELECT level FROM tls_history WHERE mx = 'mx-plain.world.test'")
diag "store: mx-tls level ${tls_level:-none}, mx-plain level ${plain_level:-none}"
check "the store holds TLS history for mx.unsigned.test" [ "$tls_level" = 2 ]
check "the store holds plaintext history for mx-plain.world.test" [ "$plain_level" = 1 ]

api GET "/api/v1/recipient?address=Someone@TLS.test&address=other@plain.test,x@tls.test."
check "lookup of three addresses: 200" [ "$HTTP_STATUS" = 200 ]
check "tls.test is class tls (store level 2)" [ "$(j 'j["recipients"][0]["class"]')" = tls ]
check "its label is TLS" [ "$(j 'j["recipients"][0]["label"]')" = TLS ]
check "domain case folded" [ "$(j 'j["recipients"][0]["domain"]')" = tls.test ]
check "address kept as given" [ "$(j 'j["recipients"][0]["address"]')" = Someone@TLS.test ]
v=$(j 'j["recipients"][0]["tls_version"]')
sv=$(sql "SELECT printf('%d', last_version) FROM tls_history WHERE mx = 'mx.unsigned.test'")
diag "tls.test: version $v (store 0x$(printf %04x "${sv:-0}")), cipher $(j 'j["recipients"][0]["cipher"]')"
check "its TLS version is the one the store recorded" \
	[ "$v" = "TLSv1.$(( ${sv:-0} - 0x0301 ))" ]
check "the MX is listed with its address" \
	[ "$(j 'j["recipients"][0]["mx"][0]["addresses"][0]')" = 198.51.100.20 ]
check "plain.test is class plaintext (store level 1), label 'no TLS'" \
	[ "$(j 'j["recipients"][1]["class"]') $(j 'j["recipients"][1]["label"]')" = "plaintext no TLS" ]
check "the third (trailing dot) is tls.test again" [ "$(j 'j["recipients"][2]["domain"]')" = tls.test ]
check "known fresh domains schedule no probe" [ "$(j 'j["recipients"][0]["probe"]')" = none ]
check "mail went to tls.test (seen: mail)" [ "$(j 'j["recipients"][0]["seen"]')" = mail ]
check "tls.test's addresses came from unvalidated hints: dnssec unknown, not 'insecure'" \
	[ "$(j 'j["recipients"][0]["dnssec"]')" = unknown ]

# --- bad input --------------------------------------------------------------------
bad_ok=0 bad_n=0
long=$(printf 'a%.0s' $(seq 1 250))
many=$(for i in $(seq 1 51); do printf 'u%d@tls.test,' "$i"; done)
for q in "" "address=" "address=nobody" "address=a@b@tls.test" "address=a@%FF.test" \
	"address=a@xn--zz.test" "address=a@exa_mple.test" "address=$long@tls.test" \
	"address=$many" "address=a@x'%3B%20DROP%20TABLE%20tls_history%3B--.test" \
	"address=a%00b@tls.test" "address=a@[198.51.100.20]"; do
	bad_n=$((bad_n + 1))
	api GET "/api/v1/recipient?$q"
	if [ "$HTTP_STATUS" = 400 ] && [ -n "$(j 'j["error"]')" ]; then
		bad_ok=$((bad_ok + 1))
	else
		diag "bad input '${q:0:60}': status $HTTP_STATUS body ${HTTP_BODY:0:120}"
	fi
done
check "every bad input ($bad_n kinds) is a 400 with a JSON error" [ "$bad_ok" = "$bad_n" ]
check "the daemon still serves and the store is intact" \
	[ "$(sql "SELECT count(*) FROM tls_history WHERE mx = 'mx.unsigned.test'")" = 1 ]
api GET "/api/v1/recipient?address=kim@b%C3%BCcher.test"
check "an IDN (UTF-8) is looked up as its A-label" \
	[ "$HTTP_STATUS $(j 'j["recipients"][0]["domain"]')" = "200 xn--bcher-kva.test" ]

# --- destinations ------------------------------------------------------------------
api GET /api/v1/destinations
check "destinations list tls.test as tls" \
	[ "$(j '[d["class"] for d in j["destinations"] if d["domain"] == "tls.test"]')" = '["tls"]' ]
check "destinations list plain.test as plaintext" \
	[ "$(j '[d["class"] for d in j["destinations"] if d["domain"] == "plain.test"]')" = '["plaintext"]' ]

# --- a downgrade: blocked, locked, released with the token ---------------------------
out=$(world_exec in python3 - <<-'EOF' 2>&1
	import smtplib
	s = smtplib.SMTP("198.51.100.20", 25, "in.world.test", timeout=20)
	try:
	    s.sendmail("sender@in.world.test", ["user@tls.test"], b"Subject: no STARTTLS\r\n\r\nx\r\n")
	    print("delivered")
	except smtplib.SMTPResponseException as e:
	    print("refused", e.smtp_code, e.smtp_error.decode(errors="replace"))
	except Exception as e:
	    print("error", type(e).__name__, e)
EOF
)
diag "plaintext session to mx-tls: $out"
check "a session that skips STARTTLS towards a TLS-history MX is refused with 4xx" \
	grep -qE '^refused 4[0-9][0-9]' <<<"$out"
sleep 0.5
api GET /api/v1/locks
check "the MX shows up as locked in /api/v1/locks" \
	[ "$(j '[l["mx"] for l in j["locks"]]')" = '["mx.unsigned.test"]' ]
api GET "/api/v1/events?limit=5"
check "the newest event is the block" [ "$(j 'j["events"][0]["kind"]')" = block ]
check "the event id matches the store's newest" \
	[ "$(j 'j["events"][0]["id"]')" = "$(sql 'SELECT max(id) FROM events')" ]
check "the event's reason is the store's" \
	[ "$(j 'j["events"][0]["reason"]')" = "$(sql 'SELECT reason FROM events ORDER BY id DESC LIMIT 1')" ]
api GET "/api/v1/recipient?address=user@tls.test"
check "a lookup shows tls.test locked" [ "$(j 'j["recipients"][0]["locked"]')" = True ]
check "... as class 'locked', label 'locked', whatever its TLS history" \
	[ "$(j 'j["recipients"][0]["class"]') $(j 'j["recipients"][0]["label"]')" = "locked locked" ]
check "... with the lock's reason as why" \
	[ "$(j 'j["recipients"][0]["why"]')" = "$(sql "SELECT lock_reason FROM tls_history WHERE mx = 'mx.unsigned.test'")" ]
check "... and its block counted" world_in_range "$(j 'j["recipients"][0]["blocks"]')" 1

api POST /api/v1/history/release '{"mx":"mx.unsigned.test"}'
check "release without a token: 401" [ "$HTTP_STATUS" = 401 ]
api POST /api/v1/history/release '{"mx":"mx.unsigned.test"}' "Authorization: Bearer wrong$TOKEN"
check "release with a wrong token: 401" [ "$HTTP_STATUS" = 401 ]
check "still locked in the store" \
	[ "$(sql "SELECT locked FROM tls_history WHERE mx = 'mx.unsigned.test'")" = 1 ]
api POST /api/v1/history/release '{"mx":"mx.unsigned.test"}' "Authorization: Bearer $TOKEN"
diag "release: $HTTP_STATUS $HTTP_BODY"
check "release with the token: 200" [ "$HTTP_STATUS" = 200 ]
check "unlocked in the store" \
	[ "$(sql "SELECT locked FROM tls_history WHERE mx = 'mx.unsigned.test'")" = 0 ]
api GET "/api/v1/recipient?address=user@tls.test"
check "released: tls.test is class tls again" [ "$(j 'j["recipients"][0]["class"]')" = tls ]
api GET /api/v1/locks
check "and gone from /api/v1/locks" [ "$(j 'len(j["locks"])')" = 0 ]
api POST /api/v1/history/release '{"mx":"mx.unsigned.test"}' "Authorization: Bearer $TOKEN"
check "releasing again: 404 (not locked)" [ "$HTTP_STATUS" = 404 ]
api POST /api/v1/probe '{"domain":"nostarttls.test"}'
check "probe without a token: 401" [ "$HTTP_STATUS" = 401 ]
api POST /api/v1/probe '{"domain":"nostarttls.test"}' "Authorization: Bearer $TOKEN"
diag "probe: $HTTP_STATUS $HTTP_BODY"
check "probe with the token: 202" [ "$HTTP_STATUS" = 202 ]

# --- unknown domain: a real probe (after the downgrade: the probe maps
# 198.51.100.20 to another MX name) ----------------------------------------------
api GET "/api/v1/recipient?address=someone@notlsa.test"
check "notlsa.test is unknown at first" [ "$(j 'j["recipients"][0]["class"]')" = unknown ]
check "its label is 'TLS?'" [ "$(j 'j["recipients"][0]["label"]')" = "TLS?" ]
check "and a probe is scheduled" [ "$(j 'j["recipients"][0]["probe"]')" = scheduled ]
cls=unknown
for i in $(seq 1 60); do
	sleep 0.5
	api GET "/api/v1/recipient?address=someone@notlsa.test"
	cls=$(j 'j["recipients"][0]["class"]')
	[ "$cls" != unknown ] && break
done
grep -v "^=== " "$WORLD_DIR/gw/tlsgated.log" | grep -iv "first-seen" | tail -15 | sed 's/^/# log: /'
diag "notlsa.test after the probe: $cls ($(j 'j["recipients"][0]["mx"]' | head -c 300))"
check "after the probe notlsa.test is class tls (signed, no TLSA, STARTTLS)" [ "$cls" = tls ]
check "notlsa.test: dnssec is what the validating probe stored (secure)" \
	[ "$(j 'j["recipients"][0]["dnssec"]')" = secure ]
diag "notlsa.test dnssec basis: $(j 'j["recipients"][0]["dnssec_basis"]')"
check "notlsa.test was only looked up (no mail went there)" \
	[ "$(j 'j["recipients"][0]["seen"]')" = looked-up ]
check "the store has the probe's result" \
	[ "$(sql "SELECT class FROM probe_results WHERE domain = 'notlsa.test' ORDER BY id DESC LIMIT 1")" = tls ]

# --- CORS, metrics, listening address -------------------------------------------------
api GET "/api/v1/recipient?address=user@tls.test" "Origin: $ORIGIN"
check "CORS: the configured origin is allowed" \
	grep -qi "^H Access-Control-Allow-Origin: $ORIGIN" <<<"$HTTP_HEADERS"
api GET "/api/v1/recipient?address=user@tls.test" "Origin: https://evil.test"
check "CORS: another origin is not" world_not grep -qi "Access-Control-Allow-Origin" <<<"$HTTP_HEADERS"

api GET /metrics
metrics=$HTTP_BODY
flows=$(world_stats 'j["flows"]["total"]')
mflows=$(sed -n 's/^tlsgate_flows_total \([0-9]*\)$/\1/p' <<<"$metrics")
diag "flows: stats $flows, metrics $mflows"
check "/metrics tlsgate_flows_total agrees with tlsgatectl stats (+-2 flows)" \
	world_in_range "$(( ${mflows:-0} - ${flows:-0} + 2 ))" 0 5
check "/metrics counts the lock" grep -q '^tlsgate_locks_total 1$' <<<"$metrics"
if command -v promtool >/dev/null 2>&1; then
	check "promtool check metrics accepts /metrics" promtool check metrics <<<"$metrics"
else
	check "/metrics lines are HELP/TYPE/samples, counters named *_total" python3 -c '
import re, sys
fam = typ = None
for line in sys.stdin.read().splitlines():
    m = re.match(r"# (HELP|TYPE) (tlsgate_[a-z_]+) (.*)$", line)
    if m:
        if m.group(1) == "HELP": fam, typ = m.group(2), None
        else:
            assert m.group(2) == fam and m.group(3) in ("counter", "gauge"), line
            typ = m.group(3)
            assert typ != "counter" or fam.endswith("_total"), fam
        continue
    m = re.match(r"(tlsgate_[a-z_]+)(\{[a-z_]+=\"(?:[^\"\\\\]|\\\\.)*\"\})? -?[0-9]+$", line)
    assert m and m.group(1) == fam and typ, line
' <<<"$metrics"
fi
check "the API does not answer on the inside address (192.0.2.1:8025)" \
	world_not world_exec in python3 -c '
import socket; socket.create_connection(("192.0.2.1", 8025), timeout=3)'

# --- tlsgatectl over the API ---------------------------------------------------------------
ctl() { world_exec gw "$WORLD_TLSGATECTL" --control "$(world_control)" --web 127.0.0.1:8025 "$@"; }
out=$(ctl check user@tls.test user@plain.test 2>&1)
diag "$(head -1 <<<"$out")"
check "tlsgatectl check prints TLS for tls.test" grep -qE '^TLS +user@tls.test' <<<"$out"
check "tlsgatectl check prints 'no TLS' for plain.test" grep -qE '^no TLS +user@plain.test' <<<"$out"
check "tlsgatectl check --json is the API's JSON" \
	[ "$(ctl check --json user@tls.test | world_json 'j["recipients"][0]["class"]')" = tls ]
check "tlsgatectl destinations lists plain.test" grep -qE '^no TLS +plain.test' <<<"$(ctl destinations)"
check "tlsgatectl events shows the release" grep -q 'release' <<<"$(ctl events 5)"
check "tlsgatectl history show names the MX's domains" \
	grep -q 'tls.test' <<<"$(ctl history show mx.unsigned.test)"
out=$(ctl status)
diag "$(tr '\n' '|' <<<"$out")"
check "tlsgatectl status reports the daemon and destinations" \
	grep -q '^destinations [0-9]* DANE ok' <<<"$out"
check "tlsgatectl on a bad address exits 1" world_not ctl check nobody

# --- Host header (DNS rebinding, issue 19) ---------------------------------------------------
# A page of another name that resolves to the gateway (rebinding) must not
# read or drive the API: only addresses, localhost and --web-host names.
api GET /api/v1/stats "Host: rebind.evil.test:8025"
check "Host of a foreign name: 421" [ "$HTTP_STATUS" = 421 ]
check "... with a body that says why and what to configure" \
	grep -q 'not a name of this gateway.*--web-host' <<<"$(j 'j["error"]')"
api GET "/api/v1/recipient?address=u@rebound.test" "Host: rebind.evil.test"
check "a lookup under a foreign Host is refused (421)" [ "$HTTP_STATUS" = 421 ]
check "... and schedules no probe" world_not grep -q 'probe of rebound.test' "$WORLD_DIR/gw/tlsgated.log"
api GET / "Host: localhost:8025"
check "Host localhost: the page is served" [ "$HTTP_STATUS" = 200 ]
api GET /api/v1/stats "Host: Status.World.Test:8025"
check "Host of a --web-host name (any case): served" [ "$HTTP_STATUS" = 200 ]

# --- probe budget: an API lookup flood does not starve mail's probes (issue 19) -------------
# 150 lookups of unknown domains (three requests of 50 addresses) ask for
# 150 probes at once. They get their own queue (32) and at most 2 of the 4
# running slots; a probe mail needs (here the operator's, which goes
# through the same mail-class path as the gate's and DNS learning's) is
# queued and starts at once. Before: one 64-entry queue, full of lookups,
# refused it.
for r in 0 1 2; do
	list=$(for i in $(seq 1 50); do printf 'u@f%d-%d.flood.test,' "$r" "$i"; done)
	api GET "/api/v1/recipient?address=${list%,}"
	[ "$HTTP_STATUS" = 200 ] || diag "flood request $r: $HTTP_STATUS"
done
out=$(world_ctl probe dane-ta.test 2>&1)
diag "tlsgatectl probe dane-ta.test: $out"
check "after the flood, mail's probe is accepted" world_not grep -qi 'error' <<<"$out"
started() { grep -qE 'probe of dane-ta.test started \(pid [0-9]+, for mail' "$WORLD_DIR/gw/tlsgated.log"; }
for _ in $(seq 1 50); do started && break; sleep 0.1; done
if started; then
	ok "... and started within 5 s, ahead of the queued lookups"
else
	not_ok "... and started within 5 s, ahead of the queued lookups"
	grep -E 'probe' "$WORLD_DIR/gw/tlsgated.log" | tail -8 | sed 's/^/# /'
fi
stats=$(world_ctl stats --json)
diag "probes: $(world_json 'j["probes"]' <<<"$stats" | tr -d '\n ')"
check "the API's probes were bounded by their own queue (some refused)" \
	[ "$(world_json 'j["probes"]["api"]["refused"]' <<<"$stats")" -ge 1 ]
check "at most 2 API probes run at once" \
	[ "$(world_json 'j["probes"]["api"]["running"]' <<<"$stats")" -le 2 ]
check "mail's queue was not touched by the flood" \
	[ "$(world_json 'j["probes"]["mail"]["refused"]' <<<"$stats")" = 0 ]

# --- pacing: a flood of requests waits its turn ----------------------------------------------
# At --web-rate 20 (burst 20), 100 lookups from 10 keep-alive connections at
# once all get their answer, none sooner than the rate allows: the last 80
# take at least 4 s. Noise only slows them down.
world_gw_stop
world_gw_start --store "$STORE" --web 127.0.0.1:8025 --web-rate 20 ||
	{ echo "Bail out! tlsgated did not restart"; exit 1; }
for i in $(seq 1 50); do
	api GET /api/v1/stats
	[ "$HTTP_STATUS" = 200 ] && break
	sleep 0.1
done
sleep 1.1 # the bucket refills to its burst
out=$(world_exec gw python3 tests/web/paced_load.py "$API/api/v1/recipient?address=a@tls.test" 100 10)
diag "paced load: 200s, other answers, seconds: $out"
read -r n200 others secs <<<"$out"
check "all 100 lookups at --web-rate 20 answered 200, no error" [ "${n200:-0}" = 100 -a "${others:-x}" = - ]
check "they took at least 3.9 s (80 beyond the burst at 20/s): ${secs:-?} s" \
	python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= 3.9)" "${secs:-0}"
api GET /api/v1/stats
paced=$(j 'j["web"]["paced"]')
check "web.paced counts the requests that waited (>= 60 of 100): ${paced:-?}" \
	[ "${paced:-0}" -ge 60 ]
check "web.rate says 20" [ "$(j 'j["web"]["rate"]')" = 20 ]
check "/metrics has tlsgate_web_paced_total" \
	grep -q '^tlsgate_web_paced_total [0-9]' <<<"$(world_exec gw python3 tests/web/http_request.py GET "$API/metrics")"

done_testing
