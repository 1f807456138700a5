/* dns_parse.c - bounded DNS message parser, see dns_parse.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns_parse.h"

#define RR_FIXED_LEN 10 /* type, class, ttl, rdlength */
#define RR_MIN_LEN 11	/* root name + fixed part */

const char *dns_error_str(enum dns_error e)
{
	switch (e) {
	case DNS_OK:
		return "ok";
	case DNS_E_TRUNCATED:
		return "truncated";
	case DNS_E_NAME_TOO_LONG:
		return "name too long";
	case DNS_E_BAD_LABEL_TYPE:
		return "bad label type";
	case DNS_E_PTR_FORWARD:
		return "compression pointer not backwards";
	case DNS_E_PTR_HOPS:
		return "too many compression pointers";
	case DNS_E_RDLENGTH:
		return "rdlength past end of message";
	case DNS_E_BAD_RDATA:
		return "malformed rdata";
	case DNS_E_TOO_MANY:
		return "too many records";
	case DNS_E_TOO_BIG:
		return "message too big";
	}
	return "unknown";
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t put_label(char *t, size_t pos, const uint8_t *l, size_t n)
{
	static const char dig[] = "0123456789";
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = l[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '*') {
			t[pos++] = (char)c;
		} else if (c == '.' || c == '\\') {
			t[pos++] = '\\';
			t[pos++] = (char)c;
		} else {
			t[pos++] = '\\';
			t[pos++] = dig[c / 100];
			t[pos++] = dig[c / 10 % 10];
			t[pos++] = dig[c % 10];
		}
	}
	return pos;
}

enum dns_error dns_name_read(const uint8_t *msg, size_t len, size_t off, char *text,
			     size_t *next)
{
	size_t pos = off, seg_start = off, wire = 1, tpos = 0, end = 0;
	unsigned hops = 0;
	bool jumped = false;

	for (;;) {
		uint8_t c;

		if (pos >= len)
			return DNS_E_TRUNCATED;
		c = msg[pos];
		if ((c & 0xc0) == 0xc0) {
			size_t target;

			if (pos + 1 >= len)
				return DNS_E_TRUNCATED;
			target = (size_t)(c & 0x3f) << 8 | msg[pos + 1];
			/* Strictly before the sequence we are in: every jump
			 * goes backwards, so a loop cannot exist. */
			if (target >= seg_start)
				return DNS_E_PTR_FORWARD;
			if (++hops > DNS_PTR_HOPS_MAX)
				return DNS_E_PTR_HOPS;
			if (!jumped)
				end = pos + 2;
			jumped = true;
			pos = seg_start = target;
			continue;
		}
		if (c & 0xc0)
			return DNS_E_BAD_LABEL_TYPE;
		if (c == 0)
			break;
		/* c <= 63 here, since both top bits are clear. */
		if (len - pos - 1 < c)
			return DNS_E_TRUNCATED;
		wire += 1 + c;
		if (wire > DNS_NAME_WIRE_MAX)
			return DNS_E_NAME_TOO_LONG;
		if (tpos)
			text[tpos++] = '.';
		tpos = put_label(text, tpos, msg + pos + 1, c);
		pos += 1 + (size_t)c;
	}
	if (tpos == 0)
		text[tpos++] = '.';
	text[tpos] = '\0';
	*next = jumped ? end : pos + 1;
	return DNS_OK;
}

/* A name inside RDATA that must end exactly at rd_end. */
static enum dns_error rdata_name(const uint8_t *msg, size_t len, size_t off, size_t rd_end,
				 char *text)
{
	size_t next;
	enum dns_error e = dns_name_read(msg, len, off, text, &next);

	if (e)
		return e == DNS_E_TRUNCATED ? DNS_E_BAD_RDATA : e;
	return next == rd_end ? DNS_OK : DNS_E_BAD_RDATA;
}

static enum dns_error parse_rdata(const uint8_t *msg, size_t len, size_t off, struct dns_rr *rr)
{
	size_t rd_end = off + rr->rdlength;

	if (rr->rclass != DNS_CLASS_IN)
		return DNS_OK;
	switch (rr->type) {
	case DNS_TYPE_A:
		if (rr->rdlength != 4)
			return DNS_E_BAD_RDATA;
		memcpy(&rr->u.a, msg + off, 4);
		return DNS_OK;
	case DNS_TYPE_AAAA:
		if (rr->rdlength != 16)
			return DNS_E_BAD_RDATA;
		memcpy(&rr->u.aaaa, msg + off, 16);
		return DNS_OK;
	case DNS_TYPE_MX:
		if (rr->rdlength < 3)
			return DNS_E_BAD_RDATA;
		rr->u.mx.preference = get16(msg + off);
		/* The name may use pointers, but its own bytes must stay
		 * inside this RDATA: read it from a message cut at rd_end. */
		return rdata_name(msg, rd_end, off + 2, rd_end, rr->u.mx.exchange);
	case DNS_TYPE_CNAME:
	case DNS_TYPE_NS:
	case DNS_TYPE_PTR:
		if (rr->rdlength < 1)
			return DNS_E_BAD_RDATA;
		return rdata_name(msg, rd_end, off, rd_end, rr->u.target);
	case DNS_TYPE_TLSA:
		if (rr->rdlength < 3)
			return DNS_E_BAD_RDATA;
		rr->u.tlsa.usage = msg[off];
		rr->u.tlsa.selector = msg[off + 1];
		rr->u.tlsa.mtype = msg[off + 2];
		rr->u.tlsa.data = msg + off + 3;
		rr->u.tlsa.len = rr->rdlength - 3u;
		return DNS_OK;
	}
	return DNS_OK;
}

static int fail(struct dns_parse_error *err, enum dns_error code, size_t off)
{
	if (err) {
		err->code = code;
		err->offset = off;
	}
	if (code == DNS_E_TOO_MANY || code == DNS_E_TOO_BIG)
		return -E2BIG;
	return -EBADMSG;
}

int dns_msg_parse(const uint8_t *buf, size_t len, struct dns_msg **out,
		  struct dns_parse_error *err)
{
	struct dns_msg *m;
	size_t off, i, total, cap, next;
	enum dns_error e;
	const uint8_t *b;
	int rc;

	if (err) {
		err->code = DNS_OK;
		err->offset = 0;
	}
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!buf && len)
		return -EINVAL;
	if (len > DNS_MSG_MAX)
		return fail(err, DNS_E_TOO_BIG, 0);
	if (len < DNS_HEADER_LEN)
		return fail(err, DNS_E_TRUNCATED, len);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->buf = malloc(len);
	if (!m->buf) {
		free(m);
		return -ENOMEM;
	}
	memcpy(m->buf, buf, len);
	m->len = len;
	b = m->buf;
	m->id = get16(b);
	m->qr = b[2] & 0x80;
	m->opcode = (b[2] >> 3) & 0x0f;
	m->aa = b[2] & 0x04;
	m->tc = b[2] & 0x02;
	m->rd = b[2] & 0x01;
	m->ra = b[3] & 0x80;
	m->ad = b[3] & 0x20;
	m->cd = b[3] & 0x10;
	m->rcode = b[3] & 0x0f;
	m->qdcount = get16(b + 4);
	m->ancount = get16(b + 6);
	m->nscount = get16(b + 8);
	m->arcount = get16(b + 10);

	if (m->qdcount > DNS_QD_MAX) {
		rc = fail(err, DNS_E_TOO_MANY, 4);
		goto bad;
	}
	total = (size_t)m->ancount + m->nscount + m->arcount;
	if (total > DNS_RR_MAX) {
		rc = fail(err, DNS_E_TOO_MANY, 6);
		goto bad;
	}
	/* Counts may lie: allocate only what the bytes can hold. */
	cap = (len - DNS_HEADER_LEN) / RR_MIN_LEN;
	if (total > cap) {
		rc = fail(err, DNS_E_TRUNCATED, len);
		goto bad;
	}
	if (m->qdcount) {
		m->qd = calloc(m->qdcount, sizeof(*m->qd));
		if (!m->qd) {
			rc = -ENOMEM;
			goto bad;
		}
	}
	if (total) {
		m->rr = calloc(total, sizeof(*m->rr));
		if (!m->rr) {
			rc = -ENOMEM;
			goto bad;
		}
	}
	off = DNS_HEADER_LEN;
	for (i = 0; i < m->qdcount; i++) {
		struct dns_question *q = &m->qd[i];

		e = dns_name_read(b, len, off, q->name, &next);
		if (e) {
			rc = fail(err, e, off);
			goto bad;
		}
		if (len - next < 4) {
			rc = fail(err, DNS_E_TRUNCATED, next);
			goto bad;
		}
		q->qtype = get16(b + next);
		q->qclass = get16(b + next + 2);
		off = next + 4;
		m->n_qd++;
	}
	for (i = 0; i < total; i++) {
		struct dns_rr *rr = &m->rr[i];

		rr->section = i < m->ancount ? DNS_SECTION_ANSWER
			      : i < (size_t)m->ancount + m->nscount ? DNS_SECTION_AUTHORITY
								      : DNS_SECTION_ADDITIONAL;
		e = dns_name_read(b, len, off, rr->name, &next);
		if (e) {
			rc = fail(err, e, off);
			goto bad;
		}
		if (len - next < RR_FIXED_LEN) {
			rc = fail(err, DNS_E_TRUNCATED, next);
			goto bad;
		}
		rr->type = get16(b + next);
		rr->rclass = get16(b + next + 2);
		rr->ttl = get32(b + next + 4);
		rr->rdlength = get16(b + next + 8);
		off = next + RR_FIXED_LEN;
		if (len - off < rr->rdlength) {
			rc = fail(err, DNS_E_RDLENGTH, off);
			goto bad;
		}
		rr->rdata = b + off;
		e = parse_rdata(b, len, off, rr);
		if (e) {
			rc = fail(err, e, off);
			goto bad;
		}
		off += rr->rdlength;
		m->n_rr++;
	}
	m->trailing = len - off;
	*out = m;
	return 0;
bad:
	dns_msg_free(m);
	return rc;
}

void dns_msg_free(struct dns_msg *m)
{
	if (!m)
		return;
	free(m->qd);
	free(m->rr);
	free(m->buf);
	free(m);
}

int dns_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msg_len,
		 size_t *consumed)
{
	size_t n;

	if ((!buf && len) || !msg || !msg_len || !consumed)
		return -EINVAL;
	if (len < 2)
		return -EAGAIN;
	n = get16(buf);
	if (n < DNS_HEADER_LEN)
		return -EBADMSG;
	if (len - 2 < n)
		return -EAGAIN;
	*msg = buf + 2;
	*msg_len = n;
	*consumed = n + 2;
	return 0;
}

bool dns_name_equal(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}
