/* fuzz_dns.c - libFuzzer target for the DNS parser: the input is parsed as
 * one message, as a DNS-over-TCP stream, and name by name from every
 * offset; the results must satisfy the header's promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns_parse.h"

static void check_msg(const struct dns_msg *m, const uint8_t *buf, size_t len)
{
	size_t i;

	if (m->n_qd != m->qdcount || m->n_rr != (size_t)m->ancount + m->nscount + m->arcount ||
	    m->len != len || m->trailing > len || memcmp(m->buf, buf, len))
		abort();
	for (i = 0; i < m->n_qd; i++)
		if (strlen(m->qd[i].name) >= DNS_NAME_TEXT_MAX || !m->qd[i].name[0])
			abort();
	for (i = 0; i < m->n_rr; i++) {
		const struct dns_rr *rr = &m->rr[i];

		if (strlen(rr->name) >= DNS_NAME_TEXT_MAX || !rr->name[0])
			abort();
		if (rr->rdata < m->buf || rr->rdata + rr->rdlength > m->buf + m->len)
			abort();
		if (rr->rclass == DNS_CLASS_IN && rr->type == DNS_TYPE_TLSA &&
		    (rr->u.tlsa.data + rr->u.tlsa.len != rr->rdata + rr->rdlength))
			abort();
		if (rr->rclass == DNS_CLASS_IN && rr->type == DNS_TYPE_MX &&
		    strlen(rr->u.mx.exchange) >= DNS_NAME_TEXT_MAX)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_parse_error err;
	struct dns_msg *m = NULL;
	const uint8_t *msg;
	size_t msg_len, consumed, off, next;
	char text[DNS_NAME_TEXT_MAX];
	int rc;

	rc = dns_msg_parse(data, size, &m, &err);
	if (rc == 0)
		check_msg(m, data, size);
	else if (m || err.code == DNS_OK)
		abort();
	dns_msg_free(m);

	/* The same bytes as a TCP stream of length-prefixed messages. */
	off = 0;
	while (dns_tcp_next(data + off, size - off, &msg, &msg_len, &consumed) == 0) {
		if (consumed != msg_len + 2 || consumed > size - off)
			abort();
		m = NULL;
		if (dns_msg_parse(msg, msg_len, &m, NULL) == 0)
			check_msg(m, msg, msg_len);
		dns_msg_free(m);
		off += consumed;
	}

	/* Names from every offset of a bounded prefix. */
	for (off = 0; off < size && off < 512; off++)
		if (dns_name_read(data, size, off, text, &next) == DNS_OK &&
		    (next <= off || next > size || strlen(text) >= DNS_NAME_TEXT_MAX))
			abort();
	return 0;
}
