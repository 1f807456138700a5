/* tls_parse.h - stateless parsing of TLS (RFC 8446, 5246) and SSLv2
 * handshakes as seen on the wire: record headers, ClientHello, ServerHello
 * (HelloRetryRequest, supported_versions), Certificate (TLS <= 1.2 and
 * 1.3 layout), alerts, and a minimal DER walker that finds the
 * SubjectPublicKeyInfo of a certificate. Plus a bounded buffer that
 * reassembles handshake messages spanning records.
 *
 * Parsers take (pointer, length), never read beyond it, never allocate
 * (except tls_hs_buf, bounded), and return 0, -EAGAIN (need more bytes) or
 * -EINVAL (malformed). Output pointers point into the input. */
#ifndef TLSGATE_TLS_PARSE_H
#define TLSGATE_TLS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tls_content {
	TLS_CT_CHANGE_CIPHER_SPEC = 20,
	TLS_CT_ALERT = 21,
	TLS_CT_HANDSHAKE = 22,
	TLS_CT_APPLICATION_DATA = 23,
	TLS_CT_HEARTBEAT = 24,
};

enum tls_hs_type {
	TLS_HS_HELLO_REQUEST = 0,
	TLS_HS_CLIENT_HELLO = 1,
	TLS_HS_SERVER_HELLO = 2,
	TLS_HS_NEW_SESSION_TICKET = 4,
	TLS_HS_END_OF_EARLY_DATA = 5,
	TLS_HS_ENCRYPTED_EXTENSIONS = 8,
	TLS_HS_CERTIFICATE = 11,
	TLS_HS_SERVER_KEY_EXCHANGE = 12,
	TLS_HS_CERTIFICATE_REQUEST = 13,
	TLS_HS_SERVER_HELLO_DONE = 14,
	TLS_HS_CERTIFICATE_VERIFY = 15,
	TLS_HS_CLIENT_KEY_EXCHANGE = 16,
	TLS_HS_FINISHED = 20,
	TLS_HS_CERTIFICATE_STATUS = 22,
};

/* RFC 8446 5.1/5.2: plaintext fragments up to 2^14, protected records up
 * to 2^14 + 256 (TLS 1.2 allows + 2048). Larger is bogus. */
#define TLS_RECORD_MAX (16384 + 2048)
#define TLS_RECORD_HEADER 5
#define TLS_SNI_MAX 255
#define TLS_VERSIONS_MAX 16

struct tls_record {
	uint8_t type;
	uint16_t version;
	uint16_t length; /* of the fragment */
};
/* Parses a record header: -EAGAIN under 5 bytes, -EINVAL when it is not a
 * TLS/SSLv3 record (unknown type, major version != 3, length over
 * TLS_RECORD_MAX). */
int tls_record_parse(const uint8_t *p, size_t len, struct tls_record *rec);

/* SSLv2 record header with a CLIENT-HELLO (1) or SERVER-HELLO (4) message:
 * returns 0 and sets the message type, the header size (2 or 3) and the
 * record length; -EAGAIN / -EINVAL otherwise. */
int tls_sslv2_parse(const uint8_t *p, size_t len, uint8_t *msg_type, size_t *hdr_len, size_t *rec_len);
/* Version announced by an SSLv2 CLIENT-HELLO / SERVER-HELLO body (after
 * the record header); 0 when too short. */
uint16_t tls_sslv2_version(const uint8_t *body, size_t len, uint8_t msg_type);

/* True when the bytes look like the start of a TLS record or an SSLv2
 * hello (needs 3 bytes): protocol confusion where SMTP is expected. */
bool tls_looks_like_tls(const uint8_t *p, size_t len);

struct tls_client_hello {
	uint16_t legacy_version;
	uint16_t versions[TLS_VERSIONS_MAX]; /* supported_versions, in order */
	unsigned int n_versions;
	char sni[TLS_SNI_MAX + 1];            /* first host_name, NUL-terminated */
	char alpn[256];                       /* first protocol, NUL-terminated */
	unsigned int n_ciphers;
	bool has_ech;
};
int tls_client_hello_parse(const uint8_t *body, size_t len, struct tls_client_hello *ch);

struct tls_server_hello {
	uint16_t legacy_version;
	uint16_t version; /* supported_versions if present, else legacy */
	uint16_t cipher;
	bool hrr;         /* HelloRetryRequest (RFC 8446 4.1.3 random) */
	uint8_t session_id_len;
	uint8_t session_id[32];
};
int tls_server_hello_parse(const uint8_t *body, size_t len, struct tls_server_hello *sh);

/* Walks a Certificate message; calls cb for each DER certificate in order
 * (leaf first). tls13 selects the RFC 8446 layout (request context, per
 * certificate extensions). Returns the number of certificates or -EINVAL. */
typedef void (*tls_cert_cb)(void *ctx, const uint8_t *der, size_t len);
int tls_certificate_parse(const uint8_t *body, size_t len, bool tls13, tls_cert_cb cb, void *ctx);

/* Finds the SubjectPublicKeyInfo (whole TLV) of a DER X.509 certificate. */
int tls_cert_spki(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len);

/* Alert levels and a few descriptions. */
#define TLS_ALERT_WARNING 1
#define TLS_ALERT_FATAL 2
#define TLS_ALERT_CLOSE_NOTIFY 0

/* IANA name of a cipher suite, e.g. "TLS_AES_256_GCM_SHA384"; NULL when
 * unknown (tls_names.c). */
const char *tls_cipher_name(uint16_t value);
/* The value of an IANA cipher suite name; -EINVAL when not in the table. */
int tls_cipher_from_name(const char *name, uint16_t *value);
/* "SSLv2", "SSLv3", "TLSv10" ... "TLSv13" (Zeek's spelling); NULL when
 * unknown. */
const char *tls_version_name(uint16_t version);
/* Like tls_version_name, but always writes something: TLS 1.3 drafts as
 * "TLSv13-draftNN", others as "unknown-0xNNNN". Returns buf. */
const char *tls_version_format(uint16_t version, char *buf, size_t size);

/* Reassembles handshake messages from the fragments of handshake records.
 * Holds at most `limit` bytes (one incomplete message); a message that
 * would not fit ends in -ENOSPC. */
struct tls_hs_buf {
	uint8_t *buf;
	size_t len, cap, limit;
};
typedef int (*tls_hs_cb)(void *ctx, uint8_t type, const uint8_t *body, size_t len);
void tls_hs_buf_init(struct tls_hs_buf *hb, size_t limit);
void tls_hs_buf_release(struct tls_hs_buf *hb);
/* Feeds one handshake-record fragment; cb is called for every complete
 * message (a non-zero return from cb stops and is returned). Returns 0,
 * -ENOSPC at the bound, -ENOMEM. */
int tls_hs_buf_feed(struct tls_hs_buf *hb, const uint8_t *frag, size_t len, tls_hs_cb cb, void *ctx);

#endif
