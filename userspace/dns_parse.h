/* dns_parse.h - bounded parser for DNS messages seen on the wire (RFC 1035).
 *
 * Used for passive learning from DNS answers that cross the gateway: the
 * input is hostile, so every length is checked and the work is linear in
 * the input. The result is a hint only; nothing here is validated (no
 * DNSSEC), the resolver must confirm what it learns.
 *
 * Names: decompressed into presentation form ("mx1.example.org", the root
 * is "."), without the trailing dot, original case kept; bytes other than
 * letters, digits, '-', '_' and '*' are written as \DDD, and '.' or '\'
 * inside a label as "\." and "\\". Compression pointers must point strictly
 * before the start of the label sequence that contains them (so every jump
 * goes backwards and loops are impossible), at most DNS_PTR_HOPS_MAX jumps
 * per name, the uncompressed name at most 255 bytes on the wire. A length
 * byte of 64..191 is a 0x40/0x80 label type (RFC 6891 deprecated them) and
 * refused as DNS_E_BAD_LABEL_TYPE, so labels are at most 63 bytes.
 *
 * Records: A, AAAA, MX, CNAME, NS, PTR and TLSA of class IN are decoded
 * into typed fields; their RDATA must have exactly the right shape (an A
 * is 4 bytes, an MX name ends where RDLENGTH ends, ...), otherwise the
 * whole message is refused. Every other type is kept opaque (rdata
 * pointer and length). OPT and the rest are not interpreted.
 *
 * Bounds: message at most DNS_MSG_MAX bytes; at most DNS_QD_MAX questions
 * and DNS_RR_MAX records in all sections together; memory allocated is
 * proportional to the records actually present, never to the counts in
 * the header (which may lie).
 *
 * Ownership: dns_msg_parse() copies the message; the result owns all its
 * memory (rdata and tlsa.data point into that copy) and is released with
 * dns_msg_free() (NULL ok). */
#ifndef TLSGATE_DNS_PARSE_H
#define TLSGATE_DNS_PARSE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_MSG_MAX 65535
#define DNS_HEADER_LEN 12
#define DNS_NAME_WIRE_MAX 255
#define DNS_LABEL_MAX 63
#define DNS_PTR_HOPS_MAX 32
#define DNS_NAME_TEXT_MAX 1024 /* worst case: every byte as \DDD, plus dots */
#define DNS_QD_MAX 8
#define DNS_RR_MAX 1024

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_TLSA = 52,
};

#define DNS_CLASS_IN 1

enum dns_section { DNS_SECTION_ANSWER, DNS_SECTION_AUTHORITY, DNS_SECTION_ADDITIONAL };

/* Why a message was refused (also used by dns_name_read()). */
enum dns_error {
	DNS_OK = 0,
	DNS_E_TRUNCATED,	/* the message ends inside a field (or counts lie) */
	DNS_E_NAME_TOO_LONG,	/* more than 255 bytes uncompressed */
	DNS_E_BAD_LABEL_TYPE,	/* 0x40 / 0x80 label types */
	DNS_E_PTR_FORWARD,	/* pointer not strictly backwards */
	DNS_E_PTR_HOPS,		/* more than DNS_PTR_HOPS_MAX pointers in one name */
	DNS_E_RDLENGTH,		/* RDATA runs past the end of the message */
	DNS_E_BAD_RDATA,	/* typed RDATA of the wrong shape */
	DNS_E_TOO_MANY,		/* more questions or records than the bounds */
	DNS_E_TOO_BIG,		/* message longer than DNS_MSG_MAX */
};

struct dns_question {
	char name[DNS_NAME_TEXT_MAX];
	uint16_t qtype;
	uint16_t qclass;
};

struct dns_rr {
	enum dns_section section;
	char name[DNS_NAME_TEXT_MAX];
	uint16_t type;
	uint16_t rclass;
	uint32_t ttl;
	uint16_t rdlength;
	const uint8_t *rdata; /* into the message copy */
	union {
		struct in_addr a;
		struct in6_addr aaaa;
		struct {
			uint16_t preference;
			char exchange[DNS_NAME_TEXT_MAX];
		} mx;
		char target[DNS_NAME_TEXT_MAX]; /* CNAME, NS, PTR */
		struct {
			uint8_t usage, selector, mtype;
			const uint8_t *data; /* may be empty (len 0) */
			size_t len;
		} tlsa;
	} u;
};

struct dns_msg {
	uint16_t id;
	bool qr, aa, tc, rd, ra, ad, cd;
	uint8_t opcode;
	uint8_t rcode; /* header RCODE only (no EDNS extension) */
	uint16_t qdcount, ancount, nscount, arcount;
	struct dns_question *qd;
	size_t n_qd;
	struct dns_rr *rr; /* answers, then authority, then additional */
	size_t n_rr;
	size_t trailing; /* bytes after the last record, tolerated */
	uint8_t *buf;	 /* the copy */
	size_t len;
};

/* Where and why parsing failed; optional. */
struct dns_parse_error {
	enum dns_error code;
	size_t offset;
};

/* Parses a whole DNS message (UDP payload, or a TCP message after
 * dns_tcp_next()). Returns 0 and sets *out, or -EINVAL (NULL arguments),
 * -EBADMSG (malformed: see err->code), -E2BIG (bounds: DNS_E_TOO_MANY or
 * DNS_E_TOO_BIG), -ENOMEM. On error *out is NULL. */
int dns_msg_parse(const uint8_t *buf, size_t len, struct dns_msg **out,
		  struct dns_parse_error *err);
void dns_msg_free(struct dns_msg *msg);

/* Reads the (possibly compressed) name at msg[off] into `text` (size at
 * least DNS_NAME_TEXT_MAX), and the offset just after it in the message
 * into *next. Returns 0 or a positive enum dns_error. */
enum dns_error dns_name_read(const uint8_t *msg, size_t len, size_t off, char *text,
			     size_t *next);

/* DNS over TCP (RFC 1035 4.2.2, RFC 7766): each message is preceded by a
 * 2-byte big-endian length. Given the start of the stream data, returns 0
 * and points *msg and *msg_len at the first complete message and sets
 * *consumed to 2 + its length; -EAGAIN when more data is needed;
 * -EBADMSG when the length is shorter than a DNS header; -EINVAL on NULL
 * arguments. This function never reads past `len`. */
int dns_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msg_len,
		 size_t *consumed);

/* Case-insensitive comparison of two names in the form above. */
bool dns_name_equal(const char *a, const char *b);

const char *dns_error_str(enum dns_error e);

#endif
