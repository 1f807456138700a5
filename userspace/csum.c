/* csum.c - the Internet checksum (RFC 1071). */
#include <netinet/in.h>
#include <sys/socket.h>

#include "csum.h"

uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	/* never overflows for one IP packet; folded here for longer runs */
	while (sum >> 24)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The TCP length of p and the sum of its pseudo-header; false when p's
 * bytes are not all in pkt[0..len). */
static bool csum_pseudo(const uint8_t *pkt, size_t len, const struct flowkey_packet *p,
			size_t *tcp_len, uint32_t *sum)
{
	if (!p->payload || p->payload < pkt + p->l4_offset || p->l4_offset >= len)
		return false;
	*tcp_len = (size_t)(p->payload - (pkt + p->l4_offset)) + p->payload_len;
	if (p->l4_offset + *tcp_len > len || *tcp_len > 0xffff || *tcp_len < 20)
		return false;
	if (p->family == AF_INET) {
		*sum = csum_add(0, p->saddr + 12, 4);
		*sum = csum_add(*sum, p->daddr + 12, 4);
	} else {
		*sum = csum_add(0, p->saddr, 16);
		*sum = csum_add(*sum, p->daddr, 16);
	}
	*sum += IPPROTO_TCP + (uint32_t)*tcp_len;
	return true;
}

bool csum_tcp_ok(const uint8_t *pkt, size_t len, const struct flowkey_packet *p)
{
	size_t tcp_len;
	uint32_t sum;

	if (!csum_pseudo(pkt, len, p, &tcp_len, &sum))
		return false;
	sum = csum_add(sum, pkt + p->l4_offset, tcp_len);
	return csum_fold(sum) == 0;
}

bool csum_tcp_partial(const uint8_t *pkt, size_t len, const struct flowkey_packet *p)
{
	size_t tcp_len;
	uint32_t sum;

	if (!csum_pseudo(pkt, len, p, &tcp_len, &sum))
		return false;
	const uint8_t *field = pkt + p->l4_offset + 16;
	uint16_t check = (uint16_t)(field[0] << 8 | field[1]);
	uint16_t pseudo = (uint16_t)~csum_fold(sum); /* folded, not complemented */
	return check == pseudo || (pseudo == 0xffff && check == 0) || (pseudo == 0 && check == 0xffff);
}
