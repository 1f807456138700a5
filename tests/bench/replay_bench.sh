#!/bin/bash
# Replay throughput of the inspection engine alone (tlsgate-replay: pcap
# reading, TCP reassembly, SMTP dialog, STARTTLS, TLS handshake, summary),
# against tshark dissecting the same captures for SMTP and TLS, in one run.
#
# Capture sets:
#  1. the Zeek SMTP/TLS captures ($TLSGATE_VECTORS/zeek/*.pcap, skipped when
#     absent), each file its own run (so process start-up counts for both);
#  2. a synthetic capture of BENCH_REPLAY_SESSIONS port-25 sessions (plain,
#     STARTTLS + TLS 1.2 with a certificate chain, STARTTLS + TLS 1.3,
#     STARTTLS refused; IPv4 and IPv6; 64 interleaved) written by
#     tests/bench/pcapgen.py, which also counts its dialog+handshake bytes
#     (SMTP lines and TLS handshake records; not message content, not
#     encrypted records). Before timing, the replay's summaries of it are
#     checked against what was generated (a benchmark of a wrong parse is
#     worthless): exit 1 if they differ.
# Times are wall clock and CPU (user+system), each the best of
# BENCH_REPLAY_REPEAT (3) runs, output to /dev/null. No timed assertion:
# the ratios are printed next to their target.
set -u
cd "$(dirname "$0")/../.." || exit 2
BUILD=${BUILD:-build}
REPLAY=${TLSGATE_REPLAY:-$BUILD/tlsgate-replay}
VEC=${TLSGATE_VECTORS:-$(pwd)/../shared/vectors}
SESS=${BENCH_REPLAY_SESSIONS:-4000}
REPEAT=${BENCH_REPLAY_REPEAT:-3}
TSHARK_FIELDS=(-e frame.number -e smtp.req.command -e smtp.req.parameter -e smtp.response.code
	-e tls.handshake.type -e tls.handshake.version -e tls.handshake.ciphersuite
	-e tls.handshake.extensions_server_name -e tls.handshake.certificate_length)

[ -x "$REPLAY" ] || { echo "replay_bench: $REPLAY missing (make)" >&2; exit 1; }
command -v tshark >/dev/null || { echo "replay_bench: tshark missing (tests/lib/deps.sh)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/tlsgate-replay-bench.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT

run_replay() { "$REPLAY" --json "$1" >/dev/null; }
run_tshark() { tshark -n -r "$1" -Y 'smtp || tls' -T fields "${TSHARK_FIELDS[@]}" >/dev/null 2>&1; }

# best FN FILE: "WALL CPU", each the least of REPEAT runs of FN FILE, in
# seconds (CPU = user + system: steadier than wall time on a shared machine).
best() {
	local i t rc w u sy bw="" bc=""
	local TIMEFORMAT='%R %U %S'
	for i in $(seq 1 "$REPEAT"); do
		t=$( { time "$1" "$2"; } 2>&1)
		rc=$?
		[ $rc -eq 0 ] || { echo "replay_bench: $1 $2 failed ($rc): $t" >&2; return 1; }
		read -r w u sy <<<"$t"
		if [ -z "$bw" ] || [ "$(echo "$w < $bw" | bc)" = 1 ]; then bw=$w; fi
		if [ -z "$bc" ] || [ "$(echo "$u + $sy < $bc" | bc)" = 1 ]; then bc=$(echo "$u + $sy" | bc); fi
	done
	echo "$bw $bc"
}

# A certificate chain for the synthetic TLS 1.2 sessions (RSA 2048 leaf and CA).
(
	cd "$TMP" &&
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
			-subj "/CN=tlsgate bench CA" &&
		openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj "/CN=mx.bench.test" &&
		printf 'subjectAltName=DNS:mx.bench.test\n' >ext.cnf &&
		openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile ext.cnf -out leaf.pem &&
		openssl x509 -in leaf.pem -outform DER -out leaf.der &&
		openssl x509 -in ca.pem -outform DER -out ca.der
) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; exit 1; }

SYN=$TMP/synthetic.pcap
python3 tests/bench/pcapgen.py "$SYN" "$SESS" "$TMP/leaf.der" "$TMP/ca.der" >"$TMP/gen.json" || exit 1

# The replay must see what was generated.
"$REPLAY" --json "$SYN" >"$TMP/synthetic.json" || exit 1
python3 - "$TMP/gen.json" "$TMP/synthetic.json" <<-'EOF' || exit 1
	import collections, json, sys
	gen = json.load(open(sys.argv[1]))
	got = collections.Counter()
	bad = []
	for line in open(sys.argv[2]):
	    s = json.loads(line)
	    t, st = s["tls"], s["starttls"]
	    if t and t["version"] == "TLSv12" and t["cipher"] == "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" \
	            and t["cert_chain_fps"][:1] == [gen["leaf_sha256"]] and s["end"] == "rst":
	        got["tls12"] += 1
	    elif t and t["version"] == "TLSv13" and t["cipher"] == "TLS_AES_256_GCM_SHA384" and s["end"] == "rst":
	        got["tls13"] += 1
	    elif not t and st["reply"] == 454 and len(s["rcptto"]) == 1 and s["end"] == "quit":
	        got["refused"] += 1
	    elif not t and not st["offered"] and len(s["rcptto"]) == 1 and s["end"] == "quit":
	        got["plain"] += 1
	    else:
	        bad.append(line.strip())
	    if s["anomalies"]:
	        bad.append(line.strip())
	if dict(got) != {k: v for k, v in gen["kinds"].items() if v} or bad:
	    print("replay_bench: the replay does not match the synthetic capture:", dict(got), gen["kinds"],
	          *bad[:3], sep="\n  ", file=sys.stderr)
	    sys.exit(1)
	print("# synthetic capture: %d sessions %s, %d packets, replay summaries match" %
	      (gen["sessions"], gen["kinds"], gen["packets"]))
EOF
syn_sessions=$(wc -l <"$TMP/synthetic.json")
syn_payload=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["payload_bytes"])' "$TMP/gen.json")
syn_dh=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dialog_handshake_bytes"])' "$TMP/gen.json")

echo "# timing the synthetic capture ($(du -h "$SYN" | cut -f1)), best of $REPEAT"
read -r syn_rw syn_rc <<<"$(best run_replay "$SYN")" || exit 1
read -r syn_tw syn_tc <<<"$(best run_tshark "$SYN")" || exit 1
[ -n "$syn_rc" ] && [ -n "$syn_tc" ] || exit 1

# The Zeek set: every capture, one process per file for both tools.
zeek_files=()
if [ -d "$VEC/zeek" ]; then
	for f in "$VEC"/zeek/*.pcap; do [ -f "$f" ] && zeek_files+=("$f"); done
fi
zk_sessions=0 zk_payload=0 zk_rw=0 zk_rc=0 zk_tw=0 zk_tc=0
if [ ${#zeek_files[@]} -gt 0 ]; then
	echo "# timing ${#zeek_files[@]} Zeek captures ($VEC/zeek), best of $REPEAT each"
	for f in "${zeek_files[@]}"; do
		"$REPLAY" --json "$f" >"$TMP/z.json" || { echo "replay_bench: $f failed" >&2; exit 1; }
		zk_sessions=$((zk_sessions + $(wc -l <"$TMP/z.json")))
		zk_payload=$((zk_payload + $(python3 -c '
import json, sys
print(sum(s["bytes"]["client"] + s["bytes"]["server"] for s in map(json.loads, open(sys.argv[1]))))' "$TMP/z.json")))
		read -r rw rc <<<"$(best run_replay "$f")"
		read -r tw tc <<<"$(best run_tshark "$f")"
		[ -n "$rc" ] && [ -n "$tc" ] || exit 1
		zk_rw=$(echo "$zk_rw + $rw" | bc -l) zk_rc=$(echo "$zk_rc + $rc" | bc -l)
		zk_tw=$(echo "$zk_tw + $tw" | bc -l) zk_tc=$(echo "$zk_tc + $tc" | bc -l)
	done
else
	echo "# Zeek captures not found at $VEC/zeek (set TLSGATE_VECTORS): that set is skipped"
fi

# A time of 0.00 (under the clock's resolution) counts as 0.005 s.
nz() { echo "if ($1 < 0.005) 0.005 else $1" | bc -l; }
row() { # row LABEL SESSIONS BYTES REPLAY_WALL REPLAY_CPU TSHARK_WALL TSHARK_CPU
	local rw rc
	rw=$(nz "$4") rc=$(nz "$5")
	printf '%-36s %8d %8.2f %6.3f/%-6.3f %10.0f %7.1f %6.2f/%-6.2f %6.1f %6.1f %6s\n' "$1" "$2" \
		"$(echo "$3 / 1000000" | bc -l)" "$4" "$5" "$(echo "$2 / $rw" | bc -l)" \
		"$(echo "$3 / 1000000 / $rw" | bc -l)" "$6" "$7" "$(echo "$6 / $rw" | bc -l)" \
		"$(echo "$7 / $rc" | bc -l)" ">=20"
}
echo
printf '%-36s %8s %8s %13s %10s %7s %13s %6s %6s %6s\n' "replay, engine alone" sessions MB \
	"replay s w/c" sessions/s MB/s "tshark s w/c" x-wall x-cpu target
row "synthetic: dialog+handshake bytes" "$syn_sessions" "$syn_dh" "$syn_rw" "$syn_rc" "$syn_tw" "$syn_tc"
row "synthetic: all TCP payload" "$syn_sessions" "$syn_payload" "$syn_rw" "$syn_rc" "$syn_tw" "$syn_tc"
[ ${#zeek_files[@]} -eq 0 ] ||
	row "Zeek set (${#zeek_files[@]} files), all payload" "$zk_sessions" "$zk_payload" "$zk_rw" "$zk_rc" "$zk_tw" "$zk_tc"
echo
echo "w/c: wall / CPU (user+system) seconds, best of $REPEAT; sessions/s and MB/s from wall time;"
echo "x-wall, x-cpu: tshark time / replay time (how many times faster the engine is)"
echo "commands: $REPLAY --json FILE >/dev/null"
echo "          tshark -n -r FILE -Y 'smtp || tls' -T fields ${TSHARK_FIELDS[*]} >/dev/null"
echo "          synthetic: tests/bench/pcapgen.py FILE $SESS leaf.der ca.der ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packets"])' "$TMP/gen.json") packets);"
echo "          the Zeek set is one process per file for both tools (start-up included)"
