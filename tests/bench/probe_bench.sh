#!/bin/bash
# make bench, issue 4: tlsgate-probe -j 64 over N generated test-world
# domains (tests/world/dns.sh, DNS_BENCH_DOMAINS) against Postfix's
# posttls-finger -l dane run on the same domains one after the other.
# Prints the wall time of each, the ratio (target >= 20x) and whether both
# give every domain the same class; each class is also checked against the
# one the zone was built for, so two tools agreeing on a wrong answer shows.
#
# Order and caches: the probe runs first against a cold resolver cache;
# posttls-finger then finds unbound's cache warm, and so does a second probe
# run. The ratio is taken between the two warm runs; the cold probe run
# gives a second, conservative ratio.
#
# posttls-finger runs in the world's "in" namespace, the whole loop inside
# one namespace wrapper (as dns_posttls_finger sets it up). It goes over the
# domains in a seeded random order until all are done or its time budget is
# spent (never fewer than BENCH_PTF_MIN); if it stops early, its time for
# all N is extrapolated from the domains it did, and the output says so.
# Results are compared only on the domains both ran.
#
# Tunables: BENCH_PROBE_DOMAINS (500), BENCH_PROBE_JOBS (64),
# BENCH_PTF_BUDGET (seconds for posttls-finger, 240), BENCH_PTF_MIN (100),
# BENCH_SEED (random order; default: time of day, printed).
# No timed assertions: exit 0 unless the world or a tool could not run.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/world/lib.sh
. tests/world/dns.sh

N=${BENCH_PROBE_DOMAINS:-500}
JOBS=${BENCH_PROBE_JOBS:-64}
PTF_BUDGET=${BENCH_PTF_BUDGET:-240}
PTF_MIN=${BENCH_PTF_MIN:-100}
SEED=${BENCH_SEED:-$(date +%s)}
PROBE=${PROBE:-$WORLD_BUILD/tlsgate-probe}

[ "$(id -u)" = 0 ] || { echo "probe_bench: needs root (network namespaces)"; exit 1; }
[ -x "$PROBE" ] || { echo "probe_bench: $PROBE missing: run make"; exit 1; }
command -v posttls-finger >/dev/null || { echo "probe_bench: posttls-finger missing"; exit 1; }

world_trap
world_up || { echo "probe_bench: world_up failed"; exit 1; }
DNS_BENCH_DOMAINS=$N dns_up || { echo "probe_bench: dns_up failed"; exit 1; }
OUT=$WORLD_DIR/probe-bench
mkdir -p "$OUT/ptf"
LIST=$OUT/domains
cut -d' ' -f1 "$DNS_DIR/bench.list" >"$LIST"
[ "$(wc -l <"$LIST")" = "$N" ] || { echo "probe_bench: $DNS_DIR/bench.list has not $N domains"; exit 1; }

now() { date +%s.%N; }

PROBE_ARGS="-j $JOBS -f $LIST --json --resolver $DNS_REC4 --trust-anchor $DNS_DIR/root.ds --transparent-zone test."
# probe_run NAME [ARGS...]: one timed run; seconds on stdout, JSON in
# $OUT/NAME.json.
probe_run() {
	local t0 t1 name=$1
	shift
	t0=$(now)
	# shellcheck disable=SC2086
	world_exec in "$PROBE" $PROBE_ARGS "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
	t1=$(now)
	echo "$t1 - $t0" | bc -l
}

# classes_of JSON: "domain class" lines from the probe's JSON output.
classes_of() {
	"$WORLD_PY" -c '
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    print(j["target"], j["class"])
' "$1" | sort
}

# posttls-finger's output reduced to our classes, as tests/probe/test_probe.sh
# does: Verified (DANE) -> dane; TLS without a DANE failure -> tls; a DANE
# failure or any lookup failure -> unknown; a dialog without TLS -> plaintext.
ptf_class() {
	local f=$1
	if grep -q "Verified TLS connection established" "$f"; then echo dane
	elif grep -qE "verification failed.*DANE|TLSA lookup error|try again|does not accept mail|not found" "$f"; then echo unknown
	elif grep -qE "(Untrusted|Anonymous) TLS connection established" "$f"; then echo tls
	elif grep -q "< 250" "$f" && ! grep -q "STARTTLS" "$f"; then echo plaintext
	else echo unknown
	fi
}

echo "# probe benchmark: $N domains, world $WORLD_ID, output in $OUT"

# --- 1. tlsgate-probe, cold resolver cache ----------------------------------
probe_cold=$(probe_run probe-cold)
classes_of "$OUT/probe-cold.json" >"$OUT/probe.classes"
probe_lines=$(wc -l <"$OUT/probe.classes")
echo "# tlsgate-probe -j $JOBS: $probe_lines results in $(printf '%.2f' "$probe_cold") s (cold cache)"
[ "$probe_lines" = "$N" ] || { echo "probe_bench: the probe gave $probe_lines results, not $N:"; tail -5 "$OUT/probe-cold.err"; exit 1; }

# --- 2. posttls-finger, one after the other ---------------------------------
# The whole loop runs inside one namespace wrapper, set up as
# dns_posttls_finger does (private mount namespace with the world's
# resolv.conf, MAIL_CONFIG with DNSSEC on, nsenter into "in"): a wrapper per
# domain would cost about as much as posttls-finger itself (~80 ms here)
# and flatter the probe. Each run is still bounded by timeout(1).
shuf --random-source=<(openssl enc -aes-128-ctr -pass "pass:$SEED" -nosalt -pbkdf2 </dev/zero 2>/dev/null) \
	"$LIST" >"$OUT/ptf.order"
# shellcheck disable=SC2016 # the inner scripts expand their own arguments
MAIL_CONFIG=$DNS_DIR/ptf unshare -m --propagation private bash -c '
	mount --bind "$1" /etc/resolv.conf || exit 111
	exec nsenter --net="$2" bash -c "$3" ptf "$4" "$5" "$6" "$7"' sh \
	"$DNS_DIR/resolv.conf" "/run/netns/$(world_ns in)" '
	order=$1 out=$2 budget=$3 min=$4 n=0
	t0=$(date +%s%N)
	while read -r d; do
		timeout -k 5 40 posttls-finger -l dane -a ipv4 "$d" >"$out/ptf/$d.log" 2>&1
		n=$((n + 1))
		[ "$n" -ge "$min" ] && [ $(($(date +%s%N) - t0)) -ge $((budget * 1000000000)) ] && break
	done <"$order"
	echo "$n $(($(date +%s%N) - t0))" >"$out/ptf.done"' \
	"$OUT/ptf.order" "$OUT" "$PTF_BUDGET" "$PTF_MIN" ||
	{ echo "probe_bench: the posttls-finger loop failed"; exit 1; }
read -r ptf_done ptf_ns <"$OUT/ptf.done" || { echo "probe_bench: no posttls-finger result"; exit 1; }
ptf_time=$(echo "$ptf_ns / 1000000000" | bc -l)
head -n "$ptf_done" "$OUT/ptf.order" | while read -r d; do
	echo "$d $(ptf_class "$OUT/ptf/$d.log")"
done | sort >"$OUT/ptf.classes"
ptf_full=$(echo "$ptf_time * $N / $ptf_done" | bc -l)

# --- 3. tlsgate-probe again, warm cache -------------------------------------
# As given (IPv4 and IPv6 to every MX address: more connections than
# posttls-finger -a ipv4 makes), and with -4, the same work as posttls-finger.
probe_warm=$(probe_run probe-warm)
probe_warm4=$(probe_run probe-warm4 -4)

# --- 4. compare ---------------------------------------------------------------
# Only the domains posttls-finger ran; each against the other and against
# the class the zone was built for.
sort "$DNS_DIR/bench.list" >"$OUT/expected.classes"
join "$OUT/ptf.classes" "$OUT/probe.classes" | join - "$OUT/expected.classes" >"$OUT/compare"
compared=$(wc -l <"$OUT/compare")
agree=$(awk '$2 == $3' "$OUT/compare" | wc -l)
ptf_right=$(awk '$2 == $4' "$OUT/compare" | wc -l)
probe_right=$(awk '$3 == $4' "$OUT/compare" | wc -l)
probe_right_all=$(join "$OUT/probe.classes" "$OUT/expected.classes" | awk '$2 == $3' | wc -l)
same_classes() { classes_of "$OUT/$1.json" | cmp -s - "$OUT/probe.classes" && echo yes || echo no; }
warm_same="$(same_classes probe-warm), -4: $(same_classes probe-warm4)"

printf '\n%-46s %10s %10s\n' "probe benchmark (issue 4)" "seconds" "domains"
printf '%-46s %10.2f %10d\n' "tlsgate-probe -j $JOBS, cold resolver cache" "$probe_cold" "$N"
printf '%-46s %10.2f %10d\n' "tlsgate-probe -j $JOBS, warm resolver cache" "$probe_warm" "$N"
printf '%-46s %10.2f %10d\n' "tlsgate-probe -j $JOBS -4, warm resolver cache" "$probe_warm4" "$N"
if [ "$ptf_done" = "$N" ]; then
	printf '%-46s %10.2f %10d\n' "posttls-finger, one after the other" "$ptf_time" "$N"
else
	printf '%-46s %10.2f %10d\n' "posttls-finger, one after the other (subset)" "$ptf_time" "$ptf_done"
	printf '%-46s %10.2f %10d   (extrapolated: %.2f s x %d / %d)\n' \
		"posttls-finger, all domains (EXTRAPOLATED)" "$ptf_full" "$N" "$ptf_time" "$N" "$ptf_done"
fi
printf '%-46s %10.1fx   (target >= 20x; both on a warm resolver cache)\n' \
	"ratio posttls-finger / tlsgate-probe" "$(echo "$ptf_full / $probe_warm" | bc -l)"
printf '%-46s %10.1fx   (the probe on a cold cache, posttls-finger warm)\n' \
	"  conservative ratio" "$(echo "$ptf_full / $probe_cold" | bc -l)"
printf '%-46s %10.1fx   (IPv4 only, as posttls-finger -a ipv4; warm cache)\n' \
	"  ratio with tlsgate-probe -4" "$(echo "$ptf_full / $probe_warm4" | bc -l)"
echo
echo "results on the $compared domains both ran ($ptf_done of $N for posttls-finger, random order, seed $SEED):"
echo "  agreements: $agree, disagreements: $((compared - agree))"
echo "  right by the zone's design: posttls-finger $ptf_right/$compared, tlsgate-probe $probe_right/$compared" \
	"(tlsgate-probe on all $N: $probe_right_all/$N; warm runs, same classes: $warm_same)"
echo "  classes (expected: count): $(cut -d' ' -f4 "$OUT/compare" | sort | uniq -c | awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 }')"
if [ "$agree" != "$compared" ]; then
	echo "  disagreements (domain posttls-finger tlsgate-probe expected):"
	awk '$2 != $3 { print "    " $0 }' "$OUT/compare"
	awk '$2 != $3 { print $1 }' "$OUT/compare" | head -3 | while read -r d; do
		echo "    -- posttls-finger $d:"
		sed 's/^/       /' "$OUT/ptf/$d.log" | head -8
	done
fi
if [ "$probe_right_all" != "$N" ]; then
	echo "  tlsgate-probe against the zone's design (domain probe expected):"
	join "$OUT/probe.classes" "$OUT/expected.classes" | awk '$2 != $3 { print "    " $0 }' | head -20
fi
echo
echo "commands (in the world's \"in\" namespace, resolver unbound $DNS_REC4 validating from the test root):"
echo "  tlsgate-probe $PROBE_ARGS [-4]"
echo "  for d in \$(cat LIST); do timeout 40 posttls-finger -l dane -a ipv4 \$d; done"
echo "      (MAIL_CONFIG=$DNS_DIR/ptf: smtp_dns_support_level = dnssec; /etc/resolv.conf -> $DNS_REC4)"
exit 0
