/* flowkey.h - the tagger's flow normalisation, in userspace: parse an IP
 * packet (as NFQUEUE or a pcap hands it over, starting at the IP header)
 * into the flow map key, the direction and the TCP fields the session
 * engine needs.
 *
 * The rules are those of bpf/tagger.bpf.c, and the key is byte for byte
 * what the BPF program looks up (tests/unit/test_tagger.c checks that):
 * IPv4 addresses as ::ffff:a.b.c.d, the lower (address, port) pair first;
 * IPv6 hop-by-hop, routing, destination options and AH headers are skipped
 * (at most FLOWKEY_MAX_EXT of them); a packet is TO_SERVER when its
 * destination port is in the port set, else TO_CLIENT.
 *
 * Nothing here allocates; the parser only reads the bytes it was given and
 * never more than len of them. */
#ifndef TLSGATE_FLOWKEY_H
#define TLSGATE_FLOWKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsgate_shared.h"

/* Same bound as PARSE_IPV6_MAX_EXT in bpf/parsing_helpers.h. */
#define FLOWKEY_MAX_EXT 6

/* A set of TCP ports (the SMTP ports from the configuration). Zero it (or
 * call port_set_clear) before use; it holds no resources. */
struct port_set {
	uint64_t bits[65536 / 64];
};

void port_set_clear(struct port_set *ps);
/* Adds port. Returns 0, or -EINVAL for port 0 (nothing is changed). */
int port_set_add(struct port_set *ps, uint16_t port);
bool port_set_contains(const struct port_set *ps, uint16_t port);
/* Returns the smallest port in the set greater than after (pass -1 to
 * start), or -1 when there is none: for filling the smtp_ports map. */
int port_set_next(const struct port_set *ps, int after);
size_t port_set_count(const struct port_set *ps);

/* What flowkey_from_ip() finds in one packet. Addresses are 16 bytes,
 * IPv4-mapped for IPv4, network order; ports and TCP fields in host order. */
struct flowkey_packet {
	struct tlsgate_flow_key key;
	enum tlsgate_dir dir;
	int family; /* AF_INET or AF_INET6 */
	uint8_t saddr[16];
	uint8_t daddr[16];
	uint16_t sport;
	uint16_t dport;
	uint32_t seq;
	uint32_t ack;
	uint8_t flags; /* TCP flags byte (FIN 0x01 ... CWR 0x80) */
	uint16_t window;
	size_t l4_offset; /* TCP header offset from the start of pkt */
	const uint8_t *payload; /* points into pkt; valid as long as pkt is */
	size_t payload_len;
};

/* Parses the IP packet pkt[0..len). The payload ends where the IP length
 * field says, which may not be beyond len (trailing bytes, e.g. Ethernet
 * padding, are ignored). Returns 0 and fills *out, or:
 *   -EINVAL          truncated or malformed (bad version, IHL, doff, length
 *                    fields, extension chain longer than FLOWKEY_MAX_EXT);
 *                    (the tagger drops headers it cannot parse: UNPARSED)
 *   -EMSGSIZE        a fragment that may carry TCP: the ports are not
 *                    reliably visible (the tagger drops it: FRAGMENT)
 *   -EPROTONOSUPPORT not TCP
 *   -ENOENT          TCP, but neither port is in ports
 * On error *out is unspecified. */
int flowkey_from_ip(const uint8_t *pkt, size_t len, const struct port_set *ports,
		    struct flowkey_packet *out);

/* Builds the normalised key for one direction of a connection (addresses
 * 16 bytes as above, ports in host order). Both directions give the same
 * key. This function can't fail. */
void flowkey_make(struct tlsgate_flow_key *key, const uint8_t saddr[16], uint16_t sport,
		  const uint8_t daddr[16], uint16_t dport);

/* "198.51.100.20:25 <-> 192.0.2.10:40000", IPv6 as "[2001:db8::1]:25".
 * When ports is not NULL and exactly one side's port is in it, that side
 * (the server) is printed first; otherwise the lower side. Always writes a
 * NUL-terminated string (truncated if size is too small, which
 * FLOWKEY_STR_MAX never is) and returns buf. */
#define FLOWKEY_STR_MAX 112
char *flowkey_format(const struct tlsgate_flow_key *key, const struct port_set *ports,
		     char *buf, size_t size);

/* The rcpt_domains map's key for a domain (normalised: lowercase, no
 * trailing dot): TLSGATE_DOMAIN_HASH_STEP over its bytes from the last to
 * the first, as the program computes it (test_tagger checks both). */
uint64_t flowkey_domain_hash(const char *domain);

#endif
