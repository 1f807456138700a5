#!/bin/bash
# tlsgate-probe against the DNSSEC test world (tests/world/dns.sh): every
# test domain must get its class, the per-MX details that make it so (DANE
# match depth and usage, DNSSEC statuses, STARTTLS), and the same verdict
# as Postfix's posttls-finger -l dane run against the same world. Also: exit
# codes, --db, full recursion from root hints, and per-stage timeouts.
#
# How this fails when it should: a probe that ignores DNSSEC status calls
# unsigned.test "dane" and bogus.test "tls"; one that treats a TLSA lookup
# failure as "no TLSA" calls slow.test "tls"; one that skips DANE checks
# calls dane-bad.test "tls"; posttls-finger disagrees with each of those.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
. tests/world/lib.sh
. tests/world/dns.sh

PROBE=${PROBE:-$WORLD_BUILD/tlsgate-probe}
[ "$(id -u)" = 0 ] || { echo "Bail out! needs root (network namespaces)"; exit 1; }
[ -x "$PROBE" ] || { echo "Bail out! $PROBE missing: run make"; exit 1; }
world_trap
world_up || { echo "Bail out! world_up failed"; exit 1; }
dns_up || { echo "Bail out! dns_up failed"; exit 1; }
diag "world $WORLD_ID, DNS in $DNS_DIR"

OUT=$WORLD_DIR/probe
mkdir -p "$OUT"
probe() {
	world_exec in "$PROBE" --resolver "$DNS_REC4" --trust-anchor "$DNS_DIR/root.ds" \
		--transparent-zone test. --dns-timeout 8 --timeout 5 "$@"
}

# jq-like access to one target's JSON line: jt TARGET EXPR
jt() {
	python3 -c '
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j["target"] == sys.argv[2]:
        r = eval(sys.argv[3])
        print(json.dumps(r) if isinstance(r, (dict, list)) else r)
        sys.exit(0)
print("missing")
' "$OUT/all.json" "$1" "$2"
}

# --- 1. every test domain, at once ------------------------------------------
domains=""
for dc in $DNS_DOMAINS; do domains="$domains ${dc%%:*}"; done
t0=$(date +%s%N)
# shellcheck disable=SC2086
probe --json -j 16 --db "$OUT/store.db" $domains nosuch.test 198.51.100.20 "[2001:db8:2::20]" \
	198.51.100.30 >"$OUT/all.json" 2>"$OUT/all.err"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
diag "probe of $(wc -l <"$OUT/all.json") targets took ${ms} ms, exit $rc"
check "probe exits 2 (some unknown) for the mixed list" [ "$rc" = 2 ]
check "one JSON line per target (13)" [ "$(wc -l <"$OUT/all.json")" = 13 ]
check "the whole list took under 30 s (concurrent, slow.test bounded)" world_in_range "$ms" 0 30000

for dc in $DNS_DOMAINS nosuch.test:unknown 198.51.100.20:tls "[2001:db8:2::20]:tls" 198.51.100.30:plaintext; do
	d=${dc%:*} want=${dc##*:}
	got=$(jt "$d" 'j["class"]')
	check "$d: class $want (got $got)" [ "$got" = "$want" ]
done

# What makes each verdict.
check "dane-ee.test: IPv4 and IPv6 both verified (dane, dane)" \
	[ "$(jt dane-ee.test '[a["verdict"] for a in j["mx"][0]["addresses"]]')" = '["dane", "dane"]' ]
check "dane-ee.test: matched by the 3 1 1 record at depth 0" \
	[ "$(jt dane-ee.test '[j["mx"][0]["addresses"][0]["dane"][k] for k in ("result","depth","tlsa")][:2]')" = '["match", 0]' ]
check "dane-ta.test: matched by 2 0 1 at depth 1 (the CA)" \
	[ "$(jt dane-ta.test 'j["mx"][0]["addresses"][0]["dane"]["tlsa"][:6] + " " + str(j["mx"][0]["addresses"][0]["dane"]["depth"])')" = "2 0 1  1" ]
check "dane-ta.test: the chain's depth-1 SHA-256 is the CA's, as published" \
	[ "$(jt dane-ta.test 'j["mx"][0]["addresses"][0]["chain"][1]["sha256"]')" = \
	  "$(openssl x509 -in "$WORLD_DIR/ca/ca.pem" -outform DER | sha256sum | cut -d' ' -f1 | tr a-f A-F)" ]
check "dane-bad.test: TLS worked but DANE said no-match (dane-fail)" \
	[ "$(jt dane-bad.test 'j["mx"][0]["addresses"][0]["verdict"] + " " + j["mx"][0]["addresses"][0]["dane"]["result"] + " " + str(j["mx"][0]["addresses"][0]["tls_version"].startswith("TLSv1."))')" = "dane-fail no-match True" ]
check "unsigned.test: MX insecure, DANE not applied, TLS" \
	[ "$(jt unsigned.test 'j["mx_status"] + " " + j["mx"][0]["dane"] + " " + j["mx"][0]["addresses"][0]["verdict"]')" = "insecure none tls" ]
check "bogus.test: MX lookup failed as bogus, no connection made" \
	[ "$(jt bogus.test 'j["mx_status"] + " " + str("bogus" in j["reason"]) + " " + str(len(j["mx"]))')" = "fail True 0" ]
check "notlsa.test: secure denial of TLSA, TLS" \
	[ "$(jt notlsa.test 'j["mx"][0]["tlsa_status"] + " " + j["mx"][0]["addresses"][0]["verdict"]')" = "none-secure tls" ]
check "nostarttls.test: STARTTLS not offered on IPv4 and IPv6" \
	[ "$(jt nostarttls.test '[(a["verdict"], a["starttls"]) for a in j["mx"][0]["addresses"]]')" = '[["plaintext", false], ["plaintext", false]]' ]
check "slow.test: secure host, TLSA lookup failed: deferred (dns-fail), never plaintext" \
	[ "$(jt slow.test 'j["mx"][0]["addr_status"] + " " + j["mx"][0]["tlsa_status"] + " " + j["mx"][0]["verdict"]')" = "secure fail dns-fail" ]
check "nullmx.test: null MX recognised" [ "$(jt nullmx.test 'j["null_mx"]')" = True ]
check "nosuch.test: NXDOMAIN" [ "$(jt nosuch.test 'j["nxdomain"]')" = True ]

# --- 2. posttls-finger -l dane agrees ---------------------------------------
# Its output reduced to our classes: Verified (DANE) -> dane; TLS without a
# DANE failure -> tls; a DANE failure or any lookup failure -> unknown; a
# dialog without TLS -> plaintext.
ptf_class() {
	local f=$1
	if grep -q "Verified TLS connection established" "$f"; then echo dane
	elif grep -qE "verification failed.*DANE|TLSA lookup error|try again|does not accept mail|not found" "$f"; then echo unknown
	elif grep -qE "(Untrusted|Anonymous) TLS connection established" "$f"; then echo tls
	elif grep -q "< 250" "$f" && ! grep -q "STARTTLS" "$f"; then echo plaintext
	else echo unknown
	fi
}
pids=""
for dc in $DNS_DOMAINS nosuch.test:unknown; do
	d=${dc%:*}
	DNS_PTF_TIMEOUT=40 dns_posttls_finger in -l dane -a ipv4 "$d" >"$OUT/ptf-$d.log" 2>&1 &
	pids="$pids $!"
done
# shellcheck disable=SC2086
wait $pids
for dc in $DNS_DOMAINS nosuch.test:unknown; do
	d=${dc%:*}
	p=$(ptf_class "$OUT/ptf-$d.log")
	got=$(jt "$d" 'j["class"]')
	check "$d: posttls-finger says $p, tlsgate-probe $got" [ "$p" = "$got" ]
	[ "$p" = "$got" ] || sed 's/^/#   /' "$OUT/ptf-$d.log" | head -8
done

# --- 2b. a list file, fewer jobs than targets ---------------------------------
printf '# comment\n\n  notlsa.test\ndane-ee.test   # trailing comment\nnostarttls.test\ndane-bad.test\nunsigned.test\n' >"$OUT/list"
probe --json -j 2 -f "$OUT/list" >"$OUT/list.json" 2>/dev/null
check "-f LIST -j 2: every target, in list order, with the classes found above" \
	[ "$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["target"] + "=" + json.loads(l)["class"] for l in open(sys.argv[1])))' "$OUT/list.json")" = \
	  "notlsa.test=tls dane-ee.test=dane nostarttls.test=plaintext dane-bad.test=unknown unsigned.test=tls" ]

# --- 3. exit codes -------------------------------------------------------------
probe -q dane-ee.test notlsa.test >/dev/null 2>&1
check "exit 0 when every target is dane or tls" [ $? = 0 ]
probe -q dane-ee.test nostarttls.test >/dev/null 2>&1
check "exit 1 when some target is plaintext" [ $? = 1 ]
probe -q dane-ee.test dane-bad.test >/dev/null 2>&1
check "exit 2 when some target is unknown (DANE failure)" [ $? = 2 ]
"$PROBE" >/dev/null 2>&1
check "exit 64 without targets" [ $? = 64 ]
"$PROBE" -j 0 x.test >/dev/null 2>&1
check "exit 64 for -j 0" [ $? = 64 ]

# --- 4. the text report --------------------------------------------------------
probe dane-ta.test >"$OUT/text.txt" 2>&1
fp=$(openssl x509 -in "$WORLD_DIR/ca/mx-tls.pem" -noout -fingerprint -sha256 | cut -d= -f2)
check "text report: banner" grep -q "banner: 220 mx-tls.world.test" "$OUT/text.txt"
check "text report: EHLO capabilities with STARTTLS" grep -qE "EHLO: .*STARTTLS" "$OUT/text.txt"
check "text report: protocol and cipher" grep -qE "TLS: TLSv1\.[23], cipher " "$OUT/text.txt"
check "text report: leaf fingerprint as openssl prints it" grep -qF "sha256 $fp" "$OUT/text.txt"
check "text report: DANE match with record and depth" \
	grep -q "DANE: match (TLSA 2 0 1, depth 1)" "$OUT/text.txt"
check "text report: class line" grep -q "^dane-ta.test: dane$" "$OUT/text.txt"

# --- 5. --db -------------------------------------------------------------------
db=$OUT/store.db
check "--db: dane-ee.test recorded as dane" \
	[ "$(sqlite3 "$db" "SELECT class FROM probe_results WHERE domain='dane-ee.test' LIMIT 1")" = dane ]
check "--db: one row per MX address for dane-ee.test (IPv4 + IPv6)" \
	[ "$(sqlite3 "$db" "SELECT count(*) FROM probe_results WHERE domain='dane-ee.test'")" = 2 ]
check "--db: TLS history level dane for mx-ee.test, tls for mx-notlsa.test" \
	[ "$(sqlite3 "$db" "SELECT group_concat(level) FROM (SELECT level FROM tls_history WHERE mx IN ('mx-ee.test','mx-notlsa.test') ORDER BY mx)")" = "3,2" ]
check "--db: address -> MX mapping marked DNSSEC-secure" \
	[ "$(sqlite3 "$db" "SELECT secure FROM addr_mx WHERE addr='198.51.100.30' AND mx='mx-plain.test'")" = 1 ]
check "--db: unsigned.test's mapping is not secure" \
	[ "$(sqlite3 "$db" "SELECT secure FROM addr_mx WHERE mx='mx.unsigned.test'")" = 0 ]

# --- 6. full recursion from the test root, no forwarder -------------------------
world_exec in "$PROBE" --root-hints "$DNS_DIR/unbound/root.hints" --trust-anchor "$DNS_DIR/root.ds" \
	--transparent-zone test. --json dane-ee.test unsigned.test >"$OUT/recurse.json" 2>"$OUT/recurse.err"
check "recursion from root hints: dane-ee.test dane, unsigned.test tls" \
	[ "$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["class"] for l in open(sys.argv[1])))' "$OUT/recurse.json")" = "dane tls" ]

# --- 7. per-stage timeouts -------------------------------------------------------
t0=$(date +%s%N)
world_exec in "$PROBE" --resolver "$DNS_REC4" --trust-anchor "$DNS_DIR/root.ds" --transparent-zone test. \
	--dns-timeout 1 --json slow.test >"$OUT/slow.json" 2>/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
check "DNS timeout 1 s: slow.test deferred on a TLSA timeout within 3 s (${ms} ms)" \
	[ "$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["mx"][0]["verdict"], "timeout" in j["mx"][0]["reason"])' "$OUT/slow.json")" = "dns-fail True" ]
check "... and quickly" world_in_range "$ms" 0 3000
t0=$(date +%s%N)
# dns-dead drops TCP port 53: a connect that never completes.
world_exec in "$PROBE" --port 53 --timeout 1 --json "$DNS_DEAD4" >"$OUT/connect.json" 2>/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
check "connect timeout 1 s: connect-fail, 'timeout waiting for connect' (${ms} ms)" \
	[ "$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["mx"][0]["addresses"][0]; print(a["verdict"], a["reason"])' "$OUT/connect.json")" = "connect-fail timeout waiting for connect" ]
check "... and quickly" world_in_range "$ms" 900 3000

done_testing
