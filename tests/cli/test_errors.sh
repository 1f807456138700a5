#!/bin/bash
# Bad input to the four programs (issue 20): one line that names the value
# and the rule, a non-zero status, no usage dump. Every tlsgated case fails
# while its options are parsed, and runs as nobody without capabilities all
# the same, so that nothing can be attached even if one did not. TAP output.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
BUILD=${BUILD:-build}
B=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "Bail out! $BUILD missing: run make"; exit 1; }
for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
	[ -x "$B/$b" ] || { echo "Bail out! $B/$b missing: run make"; exit 1; }
done

T=$(mktemp -d /tmp/tlsgate-errors.XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"

# "${UNPRIV[@]}" CMD...: CMD as nobody without capabilities (as root).
UNPRIV=()
[ "$(id -u)" != 0 ] || UNPRIV=(setpriv --reuid=65534 --regid=65534 --clear-groups
	--inh-caps=-all --bounding-set=-all --)

# run NAME CMD...: CMD (10 s at most) with stdout in $T/NAME.out, stderr in
# $T/NAME.err, status in $rc.
run() {
	local n=$1
	shift
	timeout -k 2 10 "$@" </dev/null >"$T/$n.out" 2>"$T/$n.err"
	rc=$?
}

# one_line NAME STATUS PATTERN...: the last run NAME exited STATUS, wrote
# one line to stderr matching every PATTERN (grep -E), no usage, no
# "warning:".
one_line() {
	local n=$1 want=$2 p lines bad=""
	shift 2
	lines=$(wc -l <"$T/$n.err")
	[ "$rc" -eq "$want" ] || bad="$bad status $rc, not $want;"
	[ "$lines" -eq 1 ] || bad="$bad $lines lines on stderr;"
	for p in "$@"; do
		grep -qE -- "$p" "$T/$n.err" || bad="$bad no '$p';"
	done
	! grep -qiE 'usage:|warning:' "$T/$n.err" || bad="$bad usage or warning printed;"
	if [ -z "$bad" ]; then
		ok "$n: $(head -c 200 "$T/$n.err")"
	else
		not_ok "$n:$bad"
		sed 's/^/# stderr: /' "$T/$n.err" | head -5
	fi
}

D=$B/tlsgated
# A second interface besides lo, for the cases that need two.
other=$(ls /sys/class/net | grep -vx lo | head -1)

run unknown-option "${UNPRIV[@]}" "$D" --foo
one_line unknown-option 2 '^tlsgated: unknown option --foo \(see tlsgated --help\)$'
run unknown-option-value "${UNPRIV[@]}" "$D" --inside lo --foo=bar
one_line unknown-option-value 2 'unknown option --foo[ ]'
run unknown-short "${UNPRIV[@]}" "$D" -x
one_line unknown-short 2 'unknown option -x'
run ambiguous "${UNPRIV[@]}" "$D" --pol x
one_line ambiguous 2 'ambiguous option --pol'
run no-value "${UNPRIV[@]}" "$D" --inside lo --web
one_line no-value 2 'option --web needs a value'
run flag-value "${UNPRIV[@]}" "$D" --remove=yes
one_line flag-value 2 'option --remove takes no value'
run web-port "${UNPRIV[@]}" "$D" --web 127.0.0.1:99999 --inside lo
one_line web-port 2 "'127\\.0\\.0\\.1:99999'" '1\.\.65535'
run web-port0 "${UNPRIV[@]}" "$D" --web '[::1]:0'
one_line web-port0 2 "'\\[::1\\]:0'" '1\.\.65535'
run web-host "${UNPRIV[@]}" "$D" --web localhost:8025
one_line web-host 2 "'localhost:8025'" 'not an IPv4 address'
run inside-only "${UNPRIV[@]}" "$D" --inside lo --web off
one_line inside-only 2 'without --outside'
run outside-only "${UNPRIV[@]}" "$D" --outside lo
one_line outside-only 2 'without --inside'
run no-iface "${UNPRIV[@]}" "$D" --web off
one_line no-iface 2 'no interface given'
run no-such-iface "${UNPRIV[@]}" "$D" --inside tg-nosuch0 --outside lo
one_line no-such-iface 2 "--inside 'tg-nosuch0': no such interface"
run same-iface "${UNPRIV[@]}" "$D" --inside lo --outside lo
one_line same-iface 2 "--outside 'lo': given twice"
run failclosed "${UNPRIV[@]}" "$D" --failclosed-ms 5
one_line failclosed 2 "--failclosed-ms '5'" '100\.\.600000'
run ports "${UNPRIV[@]}" "$D" --ports 25,99999
one_line ports 2 "--ports '25,99999'" "'99999' is not a port 1\.\.65535"
run loglevel "${UNPRIV[@]}" "$D" --log-level loud
one_line loglevel 2 "--log-level 'loud'" 'error, warn, info or debug'
run extra-arg "${UNPRIV[@]}" "$D" --inside lo eth9
one_line extra-arg 2 "unexpected argument 'eth9'"
run config-missing "${UNPRIV[@]}" "$D" -c "$T/none.conf"
one_line config-missing 2 "--config '$T/none.conf': No such file"
printf '# comment\ninside = lo\nweb = 127.0.0.1:99999\n' >"$T/bad.conf"
chmod 644 "$T/bad.conf"
run config-value "${UNPRIV[@]}" "$D" -c "$T/bad.conf"
one_line config-value 2 "^tlsgated: $T/bad.conf:3: web = 127\.0\.0\.1:99999: port '99999' is not 1\.\.65535$"
printf 'inside = lo\nbogus = 1\n' >"$T/unk.conf"
chmod 644 "$T/unk.conf"
run config-unknown "${UNPRIV[@]}" "$D" -c "$T/unk.conf"
one_line config-unknown 2 "$T/unk.conf:2: unknown option 'bogus'"
printf 'inside lo\n' >"$T/syn.conf"
chmod 644 "$T/syn.conf"
run config-syntax "${UNPRIV[@]}" "$D" -c "$T/syn.conf"
one_line config-syntax 2 "$T/syn.conf:1: 'inside lo': expected 'name = value'"

# A start that fails (no privileges: the tagger cannot be loaded) says
# so as "fatal:", not "warning:", and exits non-zero; the run was told it
# is not root, which is a warning.
if [ -n "$other" ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$T/run" && chown 65534 "$T/run"
	run start-fails "${UNPRIV[@]}" "$D" --inside lo --outside "$other" --pin-dir "$T/run/pins" \
		--store "$T/run/db" --state-dir "$T/run/state" --control "$T/run/ctl.sock" \
		--web off --queue-num 65000
	last=$(grep -v ': stopped$' "$T/start-fails.err" | tail -1)
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [[ "$last" == "tlsgated: fatal: "* ]]; then
		ok "start-fails: status $rc, its last word is fatal: $last"
	else
		not_ok "start-fails: status $rc, last line '$last' (want tlsgated: fatal: ...)"
		sed 's/^/# stderr: /' "$T/start-fails.err" | head -10
	fi
	check "start-fails: the one reason is not labelled warning" \
		bash -c "[ -s '$T/start-fails.err' ] && ! grep -vE 'not running as root|libbpf: ' '$T/start-fails.err' | grep -q 'warning:'"
else
	echo "ok - start-fails # SKIP needs root (to drop to nobody) and a second interface"
fi

P=$B/tlsgate-probe
run probe-jobs "$P" --jobs 0 example.org
one_line probe-jobs 64 "--jobs '0'" '1\.\.4096'
run probe-port "$P" --port 70000 example.org
one_line probe-port 64 "--port '70000'" '1\.\.65535'
run probe-unknown "$P" --frobnicate example.org
one_line probe-unknown 64 '^tlsgate-probe: unknown option --frobnicate'
run probe-novalue "$P" example.org --timeout
one_line probe-novalue 64 'option --timeout needs a value'
run probe-notarget "$P" --json
one_line probe-notarget 64 'no target'
run probe-list "$P" -f "$T/none.list"
one_line probe-list 64 "--file '$T/none.list': No such file"

R=$B/tlsgate-replay
run replay-missing "$R" "$T/none.pcap"
one_line replay-missing 1 "^tlsgate-replay: $T/none.pcap: No such file or directory$"
check "replay-missing: the path once" [ "$(grep -o "$T/none.pcap" "$T/replay-missing.err" | wc -l)" -eq 1 ]
run replay-unknown "$R" --foo x.pcap
one_line replay-unknown 2 '^tlsgate-replay: unknown option --foo'
run replay-none "$R"
one_line replay-none 2 'no capture file given'
run replay-two "$R" a.pcap b.pcap
one_line replay-two 2 "b\.pcap"

# A capture of one SMTP connection (10 packets), then the same cut in the
# middle of its last packet.
python3 - "$T" <<'EOF'
import struct, sys
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
def pkt(src, dst, sp, dp, seq, ack, flags, payload=b''):
    tcp = struct.pack('!HHIIBBHHH', sp, dp, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, bytes(src), bytes(dst))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    return b'\x02' * 6 + b'\x04' * 6 + b'\x08\x00' + ip + tcp
c, s = [192, 0, 2, 10], [198, 51, 100, 20]
cs, ss = 1000, 5000
pk = [pkt(c, s, 40000, 25, cs, 0, 0x02)]
cs += 1
pk.append(pkt(s, c, 25, 40000, ss, cs, 0x12))
ss += 1
pk.append(pkt(c, s, 40000, 25, cs, ss, 0x10))
for side, data in [('s', b'220 mx.example ESMTP\r\n'), ('c', b'EHLO a.example\r\n'),
                   ('s', b'250-mx.example\r\n250 STARTTLS\r\n'), ('c', b'MAIL FROM:<a@a.example>\r\n'),
                   ('s', b'250 ok\r\n'), ('c', b'QUIT\r\n'), ('s', b'221 bye\r\n')]:
    if side == 's':
        pk.append(pkt(s, c, 25, 40000, ss, cs, 0x18, data))
        ss += len(data)
    else:
        pk.append(pkt(c, s, 40000, 25, cs, ss, 0x18, data))
        cs += len(data)
out = struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
for i, p in enumerate(pk):
    out += struct.pack('<IIII', 1700000000 + i, 0, len(p), len(p)) + p
open(sys.argv[1] + '/good.pcap', 'wb').write(out)
open(sys.argv[1] + '/cut.pcap', 'wb').write(out[:-20])
EOF
run replay-good "$R" "$T/good.pcap"
check "replay-good: the connection's summary, status 0 (got $rc)" \
	bash -c "[ $rc -eq 0 ] && grep -q 'mail from: a@a.example' '$T/replay-good.out'"
run replay-cut "$R" "$T/cut.pcap"
one_line replay-cut 1 "^tlsgate-replay: $T/cut\.pcap: read error after 9 packet\(s\)" 'truncated'
check "replay-cut: what was read is reported first (the connection's MAIL FROM)" \
	grep -q 'mail from: a@a.example' "$T/replay-cut.out"
run replay-cut-json "$R" --json "$T/cut.pcap"
check "replay-cut --json: the summary as JSON, status 1 (got $rc)" \
	bash -c "[ $rc -eq 1 ] && grep -q '\"mail_from\"\\|a@a.example' '$T/replay-cut-json.out'"

C=$B/tlsgatectl
run ctl-unknown "$C" --foo status
one_line ctl-unknown 2 '^tlsgatectl: unknown option --foo \(see tlsgatectl --help\)$'
run ctl-web "$C" --web 127.0.0.1:99999 status
one_line ctl-web 2 "--web '127\.0\.0\.1:99999'" '1\.\.65535'
run ctl-web-env env TLSGATE_WEB=127.0.0.1:70000 "$C" destinations
one_line ctl-web-env 1 "127\.0\.0\.1:70000" '1\.\.65535'
run ctl-nocmd "$C"
one_line ctl-nocmd 2 'no command given'
run ctl-badcmd "$C" frobnicate
one_line ctl-badcmd 2 "unknown command 'frobnicate'"
run ctl-badargs "$C" policy frob
one_line ctl-badargs 2 'policy: wrong arguments'
run ctl-novalue "$C" status --web
# "--web" after the command is an argument of it: status takes none.
one_line ctl-novalue 2 "status"

done_testing
