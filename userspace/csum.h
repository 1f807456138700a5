/* csum.h - the Internet checksum (RFC 1071) for building and checking TCP
 * segments. */
#ifndef TLSGATE_CSUM_H
#define TLSGATE_CSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flowkey.h"

/* Adds p[0..len) as 16-bit big-endian words to sum (not folded). */
uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len);
/* Folds sum to 16 bits and complements it: the value for the header. */
uint16_t csum_fold(uint32_t sum);
/* True when the TCP checksum of the parsed packet p (from pkt[0..len),
 * IPv4 or IPv6) is right: what a receiver that verifies it would accept.
 * The TCP length is the header plus p->payload_len. */
bool csum_tcp_ok(const uint8_t *pkt, size_t len, const struct flowkey_packet *p);
/* True when p's checksum field holds only its pseudo-header's sum: what a
 * sender's checksum offload leaves to be filled in (CHECKSUM_PARTIAL, seen
 * on veth and by a tap before the device). A receiver on the same host
 * accepts it; one behind a real wire would not - from the wire it is a
 * forgery (README, limits). */
bool csum_tcp_partial(const uint8_t *pkt, size_t len, const struct flowkey_packet *p);

#endif
