/* pcap_input.h - reads TCP segments from a capture file (libpcap) for
 * tlsgate-replay: Ethernet (with 802.1Q/802.1ad tags), Linux cooked
 * (SLL, SLL2), raw IP, BSD loopback; IPv4 and IPv6 (extension headers
 * walked); TCP. IP fragments and non-TCP packets are skipped (counted).
 * Payload bytes are taken up to the IP length and what was captured: a
 * packet cut by the snap length gives a short payload (a gap the
 * reassembly sees). */
#ifndef TLSGATE_PCAP_INPUT_H
#define TLSGATE_PCAP_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pcap_tcp {
	uint8_t family;   /* 4 or 6 */
	uint8_t src[16];  /* IPv4 in the first 4 bytes */
	uint8_t dst[16];
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;    /* TCP flags byte (FIN 0x01 ... ACK 0x10) */
	uint16_t window;
	const uint8_t *payload; /* valid during the callback only */
	size_t len;
	uint64_t ts_ns;
};

struct pcap_input_stats {
	uint64_t packets, tcp, skipped;
};

/* Decodes one frame of the given link type (DLT_* value). Returns 0 for a
 * TCP segment, -ENOENT for anything else, -EINVAL when malformed. */
int pcap_input_decode(int linktype, const uint8_t *frame, size_t caplen, struct pcap_tcp *out);

/* Calls cb for every TCP segment in capture order; a non-zero return from
 * cb stops the loop and is returned. Returns 0, or -EIO with a message in
 * err when the file cannot be read. */
typedef int (*pcap_input_cb)(void *ctx, const struct pcap_tcp *seg);
int pcap_input_read(const char *path, pcap_input_cb cb, void *ctx, struct pcap_input_stats *stats,
		    char *err, size_t errlen);

#endif
