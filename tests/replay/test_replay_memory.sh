#!/bin/bash
# tlsgate-replay frees each connection's session when it closes: memory
# follows the connections open at once, not the length of the capture, and
# the output is still one summary per connection in first-seen order, with
# the end a late RST gives a FIN-closed connection. TAP output.
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
BUILD=${BUILD:-build}
REPLAY=${TLSGATE_REPLAY:-$BUILD/tlsgate-replay}
[ -x "$REPLAY" ] || { echo "Bail out! $REPLAY missing: run make"; exit 1; }
TMP=$(mktemp -d /tmp/tlsgate-replay-mem.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/k.pem" \
	-out "$TMP/c.pem" -days 1 -subj "/CN=mx.bench.test" >/dev/null 2>&1 &&
	openssl x509 -in "$TMP/c.pem" -outform DER -out "$TMP/c.der" || { echo "Bail out! openssl"; exit 1; }

# peak_kb N: peak RSS (KiB) replaying a synthetic capture of N sessions
# (64 open at a time); checks the summaries' count and order on the way.
peak_kb() {
	local n=$1 pc=$TMP/s$1.pcap
	python3 tests/bench/pcapgen.py "$pc" "$n" "$TMP/c.der" >/dev/null || return 1
	/usr/bin/time -f %M -o "$TMP/rss$n" "$REPLAY" --json "$pc" >"$TMP/s$n.json" || return 1
	# pcapgen numbers sessions in start order; client port 1024 + 7k mod 60000.
	python3 - "$TMP/s$n.json" "$n" <<-'EOF' || return 1
		import json, sys
		ports = [json.loads(l)["orig_p"] for l in open(sys.argv[1])]
		n = int(sys.argv[2])
		want = [1024 + (k * 7) % 60000 for k in range(n)]
		if ports != want:
		    print("# order/count wrong: %d summaries, first %r" % (len(ports), ports[:5]))
		    sys.exit(1)
	EOF
	cat "$TMP/rss$n"
}
small=$(peak_kb 500) && large=$(peak_kb 8000)
check "8000 and 500 sessions: one summary each, in first-seen order" test -n "$large"
per=$(( (${large:-0} - ${small:-0}) * 1024 / 7500 ))
diag "peak RSS ${small:-?} KiB (500 sessions), ${large:-?} KiB (8000): $per bytes per extra closed session"
# A live session holds several KiB (6.5 KiB struct plus buffers); a closed
# one only its summary line (~1 KiB).
check "memory per closed session below 2 KiB ($per bytes)" test -n "$large" -a "$per" -lt 2048

# A connection closed by FIN both ways, then a RST; one closed by FIN only;
# then a new SYN on the first one's tuple: three connections, in order.
python3 - "$TMP/late.pcap" <<-'EOF'
	import sys
	sys.path.insert(0, "tests/bench")
	import pcapgen as g
	w = g.Writer(sys.argv[1])
	cli, srv = bytes([192, 0, 2, 10]), bytes([198, 51, 100, 20])

	def session(cport, late_rst, cseq=1000, sseq=5000):
	    out = []
	    def pkt(c2s, flags, data=b""):
	        nonlocal cseq, sseq
	        if c2s:
	            out.append(g.frame(False, cli, srv, cport, 25, cseq, sseq, flags, data))
	            cseq += len(data) + (1 if flags & 0x03 else 0)
	        else:
	            out.append(g.frame(False, srv, cli, 25, cport, sseq, cseq, flags, data))
	            sseq += len(data) + (1 if flags & 0x03 else 0)
	    pkt(True, 0x02); pkt(False, 0x12); pkt(True, 0x10)
	    pkt(False, 0x18, b"220 mx ESMTP\r\n")
	    pkt(True, 0x18, b"EHLO c%d.test\r\n" % cport)
	    pkt(False, 0x18, b"250 mx\r\n")
	    pkt(True, 0x11); pkt(False, 0x11); pkt(True, 0x10)
	    if late_rst:
	        pkt(True, 0x04)
	    return out

	for fr in session(40000, True) + session(40001, False) + session(40000, False, 9000, 7000):
	    w.packet(fr)
	w.f.close()
EOF
"$REPLAY" --json "$TMP/late.pcap" >"$TMP/late.json"
ends=$(python3 -c '
import json, sys
print(" ".join("%s:%s:%s" % (s["orig_p"], s["helo"], s["end"]) for s in map(json.loads, open(sys.argv[1]))))' "$TMP/late.json")
diag "$ends"
check "FIN close then RST ends in rst; FIN only in fin; a reused tuple is a new connection" \
	test "$ends" = "40000:c40000.test:rst 40001:c40001.test:fin 40000:c40000.test:fin"
"$REPLAY" "$TMP/late.pcap" >"$TMP/late.txt"
check "human output agrees (end=rst, end=fin, end=fin)" \
	test "$(grep -o 'end=[a-z]*' "$TMP/late.txt" | paste -sd' ')" = "end=rst end=fin end=fin"
done_testing
