# shellcheck shell=bash
# DNSSEC for the test world: a signed test root, a validating recursive
# resolver, and test domains whose MX hosts are the world's real Postfix
# servers. Source after lib.sh; call dns_up once world_up succeeded.
#
#   sw (br0) -- p-dnsauth -- dns-auth  203.0.113.53, 2001:db8:3::53   nsd: ".", "test.",
#                                      "unsigned.test." (unsigned), "bogus.test." (broken sigs)
#            -- p-dnsrec  -- dns-rec   203.0.113.10, 2001:db8:3::10   unbound, validating,
#                                      recursing from the test root
#            -- p-dnsdead -- dns-dead  203.0.113.99, 2001:db8:3::99   drops every DNS query
#   gw gets 203.0.113.1/24 and 2001:db8:3::1/64 on "outside" and routes.
#
# Keys are made and zones signed at run time (ldns-keygen, ldns-signzone,
# ECDSA P-256); the root's DS is the trust anchor ($DNS_DIR/root.ds). The
# MX hosts are mx-tls (198.51.100.20, 2001:db8:2::20; certificate from the
# run's test CA, name mx-tls.world.test) and mx-plain (198.51.100.30, no
# STARTTLS); mx-tls is switched to send its chain (leaf + CA) so that a
# DANE-TA record can match the CA.
#
# Test domains (DNS_DOMAINS, with the class a correct prober must give):
#   dane-ee.test     MX mx-ee.test, TLSA 3 1 1 (leaf SPKI)     dane
#   dane-ta.test     MX mx-tls.world.test, TLSA 2 0 1 (CA)    dane
#   dane-bad.test    MX mx-bad.test, TLSA 3 1 1 not matching  unknown (DANE failure)
#   unsigned.test    TLSA (matching) in an unsigned zone      tls
#   bogus.test       zone with broken signatures              unknown (bogus)
#   notlsa.test      signed, no TLSA, STARTTLS                tls
#   nostarttls.test  signed, MX without STARTTLS              plaintext
#   slow.test        MX mx-slow.test whose TLSA lookup times  unknown (deferred)
#                    out (_tcp.mx-slow.test delegated to dns-dead)
#   nullmx.test      null MX (RFC 7505)                       unknown (no mail)
#
# DNS_BENCH_DOMAINS=N (unset: nothing changes) adds N more domains to
# "test." before signing, bench-000.test ..., each with its own MX host
# unless noted, cycling through six classes: dane (3 1 1), dane (2 0 1 via
# the shared mx-tls.world.test), unknown (3 1 1 not matching), tls (no
# TLSA), plaintext (mx-plain's address), unknown (null MX). The list with
# the expected classes goes to $DNS_DIR/bench.list ("domain class" lines).
#
# Contract: dns_up sets DNS_DIR ($WORLD_DIR/dns) and writes there root.ds
# (trust anchor), resolv.conf (for posttls-finger) and the logs; the
# namespaces are "$WORLD_ID-dns*", so world_down removes them with the rest.
# Returns non-zero (diagnostics on stderr) on failure.

DNS_AUTH4=203.0.113.53
DNS_AUTH6=2001:db8:3::53
DNS_REC4=203.0.113.10
DNS_REC6=2001:db8:3::10
DNS_DEAD4=203.0.113.99
DNS_DEAD6=2001:db8:3::99
DNS_TEMPLATES=$WORLD_ROOT/tests/world/dns
DNS_DOMAINS="dane-ee.test:dane dane-ta.test:dane dane-bad.test:unknown unsigned.test:tls
 bogus.test:unknown notlsa.test:tls nostarttls.test:plaintext slow.test:unknown nullmx.test:unknown"

dns_log() { echo "dns: $*" >&2; }

_dns_node() {
	local node=$1 v4=$2 v6=$3 ns port
	ns=$(world_ns "$node")
	port=p-${node//-/}
	ip netns add "$ns" && ip -n "$ns" link set lo up || return 1
	world_exec "$node" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 || return 1
	_world_link "$node" eth0 sw "$port" || return 1
	ip -n "$(world_ns sw)" link set "$port" master br0 || return 1
	_world_addr "$node" eth0 "$v4/24" "$v6/64" || return 1
	ip -n "$ns" route add default via 203.0.113.1 &&
		ip -n "$ns" -6 route add default via 2001:db8:3::1
}

_dns_net_up() {
	_world_addr gw outside 203.0.113.1/24 2001:db8:3::1/64 || return 1
	_dns_node dns-auth "$DNS_AUTH4" "$DNS_AUTH6" &&
		_dns_node dns-rec "$DNS_REC4" "$DNS_REC6" &&
		_dns_node dns-dead "$DNS_DEAD4" "$DNS_DEAD6" || return 1
	# dns-dead exists but never answers: queries vanish (a timeout, not
	# an ICMP error that would end the lookup at once).
	world_exec dns-dead iptables -A INPUT -p udp --dport 53 -j DROP &&
		world_exec dns-dead iptables -A INPUT -p tcp --dport 53 -j DROP &&
		world_exec dns-dead ip6tables -A INPUT -p udp --dport 53 -j DROP &&
		world_exec dns-dead ip6tables -A INPUT -p tcp --dport 53 -j DROP
}

# _dns_key ZONE: make a key (KSK flag, used for every RRset) and print its
# base name (in $DNS_DIR/keys).
_dns_key() {
	(cd "$DNS_DIR/keys" && ldns-keygen -a ECDSAP256SHA256 -k "$1")
}

# _dns_sign ZONE FILE KEY: FILE.signed from FILE.
_dns_sign() {
	ldns-signzone -n -o "$1" -f "$2.signed" "$2" "$DNS_DIR/keys/$3" >/dev/null
}

# _dns_break_sigs FILE: flip a character in every RRSIG except those over
# DNSKEY, so the keys validate but no data does ("bogus").
_dns_break_sigs() {
	python3 - "$1" <<-'EOF'
		import sys
		path = sys.argv[1]
		out = []
		for line in open(path):
		    f = line.split()
		    if len(f) > 12 and f[3] == "RRSIG" and f[4] != "DNSKEY":
		        sig = f[-1]
		        c = "B" if sig[0] != "B" else "C"
		        f[-1] = c + sig[1:]
		        line = "\t".join(f) + "\n"
		    out.append(line)
		open(path, "w").write("".join(out))
	EOF
}

# _dns_bench_records N SPKI BAD: print the records of N benchmark domains
# (see the header) and write $DNS_DIR/bench.list.
_dns_bench_records() {
	local n=$1 spki=$2 bad=$3 i d mx
	case $n in '' | *[!0-9]*) dns_log "DNS_BENCH_DOMAINS: not a number: $n"; return 1 ;; esac
	: >"$DNS_DIR/bench.list" || return 1
	for ((i = 0; i < n; i++)); do
		d=$(printf 'bench-%03d.test' "$i") mx=mx.$d
		case $((i % 6)) in
		0) printf '%s.\tIN MX 10 %s.\n%s.\tIN A 198.51.100.20\n_25._tcp.%s.\tIN TLSA 3 1 1 %s\n' \
			"$d" "$mx" "$mx" "$mx" "$spki"
			echo "$d dane" >>"$DNS_DIR/bench.list" ;;
		1) printf '%s.\tIN MX 10 mx-tls.world.test.\n' "$d"
			echo "$d dane" >>"$DNS_DIR/bench.list" ;;
		2) printf '%s.\tIN MX 10 %s.\n%s.\tIN A 198.51.100.20\n_25._tcp.%s.\tIN TLSA 3 1 1 %s\n' \
			"$d" "$mx" "$mx" "$mx" "$bad"
			echo "$d unknown" >>"$DNS_DIR/bench.list" ;;
		3) printf '%s.\tIN MX 10 %s.\n%s.\tIN A 198.51.100.20\n' "$d" "$mx" "$mx"
			echo "$d tls" >>"$DNS_DIR/bench.list" ;;
		4) printf '%s.\tIN MX 10 %s.\n%s.\tIN A 198.51.100.30\n' "$d" "$mx" "$mx"
			echo "$d plaintext" >>"$DNS_DIR/bench.list" ;;
		5) printf '%s.\tIN MX 0 .\n' "$d"
			echo "$d unknown" >>"$DNS_DIR/bench.list" ;;
		esac
	done
}

_dns_zones() {
	local z=$DNS_DIR/zones ca=$WORLD_DIR/ca spki cahash bad kroot ktest kbogus
	mkdir -p "$z" "$DNS_DIR/keys" || return 1
	spki=$(openssl x509 -in "$ca/mx-tls.pem" -pubkey -noout | openssl pkey -pubin -outform DER |
		sha256sum | cut -d' ' -f1) || return 1
	cahash=$(openssl x509 -in "$ca/ca.pem" -outform DER | sha256sum | cut -d' ' -f1) || return 1
	# A digest of something else: a well-formed record that cannot match.
	bad=$(printf 'not the key of %s' "$WORLD_ID" | sha256sum | cut -d' ' -f1)
	[ ${#spki} = 64 ] && [ ${#cahash} = 64 ] || return 1

	kroot=$(_dns_key .) && ktest=$(_dns_key test.) && kbogus=$(_dns_key bogus.test.) || return 1
	for t in root test unsigned bogus; do
		sed -e "s/@SPKI@/$spki/g" -e "s/@CAHASH@/$cahash/g" -e "s/@BAD@/$bad/g" \
			-e "s/@AUTH4@/$DNS_AUTH4/g" -e "s/@AUTH6@/$DNS_AUTH6/g" \
			-e "s/@DEAD4@/$DNS_DEAD4/g" -e "s/@DEAD6@/$DNS_DEAD6/g" \
			"$DNS_TEMPLATES/$t.zone" >"$z/$t.zone" || return 1
	done
	if [ -n "${DNS_BENCH_DOMAINS:-}" ]; then
		_dns_bench_records "$DNS_BENCH_DOMAINS" "$spki" "$bad" >>"$z/test.zone" || return 1
	fi
	# Bottom up: each parent gets its child's DS before it is signed.
	_dns_sign bogus.test. "$z/bogus.zone" "$kbogus" && _dns_break_sigs "$z/bogus.zone.signed" &&
		cat "$DNS_DIR/keys/$kbogus.ds" >>"$z/test.zone" &&
		_dns_sign test. "$z/test.zone" "$ktest" &&
		cat "$DNS_DIR/keys/$ktest.ds" >>"$z/root.zone" &&
		_dns_sign . "$z/root.zone" "$kroot" || return 1
	cp "$DNS_DIR/keys/$kroot.ds" "$DNS_DIR/root.ds"
}

_dns_nsd() {
	local d=$DNS_DIR/nsd
	mkdir -p "$d" || return 1
	cat >"$d/nsd.conf" <<-EOF
		server:
		  ip-address: $DNS_AUTH4
		  ip-address: $DNS_AUTH6
		  port: 53
		  username: ""
		  chroot: ""
		  zonesdir: "$DNS_DIR/zones"
		  database: ""
		  zonelistfile: "$d/zone.list"
		  xfrdfile: "$d/xfrd.state"
		  xfrdir: "$d"
		  pidfile: "$d/nsd.pid"
		  logfile: "$d/nsd.log"
		  server-count: 1
		  verbosity: 1
		  hide-version: yes
		remote-control:
		  control-enable: no
		zone:
		  name: "."
		  zonefile: "root.zone.signed"
		zone:
		  name: "test."
		  zonefile: "test.zone.signed"
		zone:
		  name: "unsigned.test."
		  zonefile: "unsigned.zone"
		zone:
		  name: "bogus.test."
		  zonefile: "bogus.zone.signed"
	EOF
	nsd-checkconf "$d/nsd.conf" || return 1
	nsenter --net="/run/netns/$(world_ns dns-auth)" nsd -d -c "$d/nsd.conf" >"$d/stdout.log" 2>&1 &
	echo $! >"$d/run.pid"
}

_dns_unbound() {
	local d=$DNS_DIR/unbound
	mkdir -p "$d" || return 1
	printf '.\t3600000\tIN\tNS\tns.test.\nns.test.\t3600000\tIN\tA\t%s\nns.test.\t3600000\tIN\tAAAA\t%s\n' \
		"$DNS_AUTH4" "$DNS_AUTH6" >"$d/root.hints"
	cat >"$d/unbound.conf" <<-EOF
		server:
		  interface: $DNS_REC4
		  interface: $DNS_REC6
		  port: 53
		  access-control: 0.0.0.0/0 allow
		  access-control: ::/0 allow
		  username: ""
		  chroot: ""
		  directory: "$d"
		  pidfile: "$d/unbound.pid"
		  logfile: "$d/unbound.log"
		  use-syslog: no
		  do-daemonize: no
		  num-threads: 1
		  so-reuseport: no
		  verbosity: 1
		  val-log-level: 2
		  root-hints: "$d/root.hints"
		  trust-anchor-file: "$DNS_DIR/root.ds"
		  module-config: "validator iterator"
		  qname-minimisation: no
		  harden-referral-path: no
		  aggressive-nsec: no
		  prefetch: no
		  # dns-dead must time out every time: without this, unbound soon
		  # answers SERVFAIL at once for a server it has found down, and a
		  # test of the probe's own DNS timeout sees no timeout.
		  infra-keep-probing: yes
		  # "test." is a special-use name unbound answers itself by default.
		  local-zone: "test." nodefault
		remote-control:
		  control-enable: no
	EOF
	unbound-checkconf "$d/unbound.conf" >/dev/null || return 1
	nsenter --net="/run/netns/$(world_ns dns-rec)" unbound -d -c "$d/unbound.conf" >"$d/stdout.log" 2>&1 &
	echo $! >"$d/run.pid"
}

# _dns_wait NODE ADDR: until ADDR answers a query for the root SOA (10 s).
_dns_wait() {
	local i
	for i in $(seq 1 50); do
		world_exec in dig +time=1 +tries=1 +short @"$2" . SOA 2>/dev/null | grep -q . && return 0
		sleep 0.2
	done
	dns_log "$1 ($2) does not answer"
	return 1
}

# _dns_mx_chain: mx-tls sends leaf + CA (a DANE-TA digest needs the TA sent).
_dns_mx_chain() {
	local ca=$WORLD_DIR/ca d=$WORLD_DIR/mx-tls
	cat "$ca/mx-tls.key" "$ca/mx-tls.pem" "$ca/ca.pem" >"$ca/mx-tls-chain.pem" &&
		chmod 600 "$ca/mx-tls-chain.pem" &&
		world_exec mx-tls postconf -c "$d/etc" -e "smtpd_tls_chain_files = $ca/mx-tls-chain.pem" &&
		world_exec mx-tls postfix -c "$d/etc" reload >/dev/null 2>&1
}

# dns_up: everything above, in the current world.
dns_up() {
	[ -n "${WORLD_DIR:-}" ] || { dns_log "no world"; return 1; }
	DNS_DIR=$WORLD_DIR/dns
	export DNS_DIR
	mkdir -p "$DNS_DIR" || return 1
	printf 'nameserver %s\noptions trust-ad edns0 timeout:3 attempts:1\n' "$DNS_REC4" >"$DNS_DIR/resolv.conf"
	# posttls-finger reads a main.cf (MAIL_CONFIG): DNSSEC on, nothing else.
	mkdir -p "$DNS_DIR/ptf" &&
		printf 'compatibility_level = 3.6\nsmtp_dns_support_level = dnssec\nsmtp_host_lookup = dns\n' \
			>"$DNS_DIR/ptf/main.cf" || return 1
	_dns_net_up || { dns_log "network set-up failed"; return 1; }
	_dns_zones >"$DNS_DIR/zones.log" 2>&1 || { dns_log "zone signing failed"; cat "$DNS_DIR/zones.log" >&2; return 1; }
	_dns_nsd || { dns_log "nsd set-up failed"; return 1; }
	_dns_unbound || { dns_log "unbound set-up failed"; return 1; }
	_dns_mx_chain || { dns_log "mx-tls chain set-up failed"; return 1; }
	_dns_wait dns-auth "$DNS_AUTH4" && _dns_wait dns-rec "$DNS_REC4" || {
		tail -20 "$DNS_DIR/nsd/nsd.log" "$DNS_DIR/nsd/stdout.log" "$DNS_DIR/unbound/unbound.log" \
			"$DNS_DIR/unbound/stdout.log" >&2 2>/dev/null
		return 1
	}
	dns_log "up: nsd $DNS_AUTH4, unbound $DNS_REC4, trust anchor $DNS_DIR/root.ds"
}

# dns_posttls_finger NODE ARGS...: posttls-finger in NODE with the world's
# resolver (resolv.conf bind-mounted in a private mount namespace) and
# $DNS_DIR/ptf/main.cf; killed after DNS_PTF_TIMEOUT (60) seconds.
dns_posttls_finger() {
	local node=$1
	shift
	MAIL_CONFIG=$DNS_DIR/ptf timeout -k 5 "${DNS_PTF_TIMEOUT:-60}" unshare -m --propagation private sh -c '
		mount --bind "$1" /etc/resolv.conf || exit 111
		shift
		exec nsenter --net="$@"' sh "$DNS_DIR/resolv.conf" "/run/netns/$(world_ns "$node")" \
		posttls-finger "$@"
}
