/* resolver.h - validated DNS resolution for DANE (libunbound), driven from
 * the caller's event loop.
 *
 * Two layers:
 *  - resolver_query(): one asynchronous query (name, type). The answer keeps
 *    DNSSEC's three-way status (secure, insecure, bogus) apart from the
 *    outcome of the lookup (rcode, timeout), plus the TTL and the RDATA.
 *    Answers that validated (secure or insecure, NOERROR or NXDOMAIN) are
 *    cached until their TTL runs out; the cache holds at most
 *    cache_max entries (the one closest to expiry is evicted first). Bogus
 *    answers, SERVFAIL and timeouts are never cached.
 *  - resolver_lookup_domain(): everything SMTP needs for one recipient
 *    domain per RFC 7672: MX in preference order (an implicit MX from A/AAAA
 *    when the domain has none; a null MX per RFC 7505 means "no mail"), and
 *    for each MX host its A, AAAA and _25._tcp TLSA records, with the CNAME
 *    rules of RFC 7672 2.2.3, and whether DANE applies.
 *
 * Event loop: put resolver_fd() in the poll set (readable); when it is
 * readable call resolver_process(). Call resolver_expire() at least at
 * resolver_next_timeout_ms(): it ends queries that took longer than the
 * configured timeout with RESOLVER_E_TIMEOUT. Callbacks run only from
 * resolver_process(), resolver_expire() and, for cached answers,
 * resolver_query() / resolver_lookup_domain() themselves (before they
 * return): a caller must be ready for that.
 *
 * Trust: validation uses the trust anchor file given (default
 * RESOLVER_DEFAULT_TRUST_ANCHOR, Debian's dns-root-data). With forwarders
 * the upstream resolver is only a transport: libunbound validates itself.
 * Without forwarders it recurses from the root hints (a file, or unbound's
 * built-in root servers).
 *
 * Ownership: answers passed to callbacks are owned by the resolver and valid
 * only during the callback; copy what you keep. Not thread-safe: one thread
 * uses one resolver. */
#ifndef TLSGATE_RESOLVER_H
#define TLSGATE_RESOLVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dane.h"

#define RESOLVER_DEFAULT_TRUST_ANCHOR "/usr/share/dns/root.key"
#define RESOLVER_NAME_MAX 256		/* presentation form incl. NUL */
#define RESOLVER_RDATA_MAX 64		/* records kept per answer */
#define RESOLVER_MX_MAX 16		/* MX hosts kept per domain */
#define RESOLVER_ADDR_MAX 16		/* addresses kept per host and family */
#define RESOLVER_DEFAULT_CACHE_MAX 4096
#define RESOLVER_DEFAULT_TIMEOUT_MS 10000
#define RESOLVER_ERROR_MAX 640		/* name, reason, why bogus */

enum resolver_security {
	RESOLVER_INSECURE = 0, /* validated as provably unsigned (or no anchor covers it) */
	RESOLVER_SECURE,       /* DNSSEC chain of trust verified */
	RESOLVER_BOGUS,	       /* DNSSEC validation failed: the data must not be used */
};

/* How the lookup itself ended (independent of the security status). */
enum resolver_error {
	RESOLVER_OK = 0,      /* an answer: see rcode (NOERROR or NXDOMAIN) */
	RESOLVER_E_SERVFAIL,  /* SERVFAIL or any other failure rcode */
	RESOLVER_E_TIMEOUT,   /* no answer within the timeout */
	RESOLVER_E_INTERNAL,  /* libunbound error (memory, network setup) */
};

struct resolver_answer {
	char qname[RESOLVER_NAME_MAX];
	uint16_t qtype;
	enum resolver_error error;
	enum resolver_security security;
	int rcode;	/* DNS rcode when error is OK or SERVFAIL, else -1 */
	bool nxdomain;
	uint32_t ttl;	/* seconds; 0 when unknown */
	char canonname[RESOLVER_NAME_MAX]; /* after CNAMEs; "" when none */
	char why_bogus[256];
	size_t n;	/* records (at most RESOLVER_RDATA_MAX kept) */
	uint8_t *rdata[RESOLVER_RDATA_MAX];
	uint16_t rdlen[RESOLVER_RDATA_MAX];
};

struct resolver_config {
	const char *trust_anchor;	/* file with DS/DNSKEY; NULL = default */
	const char *forwarders;		/* "addr[@port][,addr...]"; NULL = recurse */
	const char *root_hints;		/* root hints file for recursion; NULL = built-in */
	size_t cache_max;		/* 0 = RESOLVER_DEFAULT_CACHE_MAX */
	unsigned int timeout_ms;	/* per query; 0 = RESOLVER_DEFAULT_TIMEOUT_MS */
	/* Special-use zones (RFC 6761: "test.", "invalid.", ...) that libunbound
	 * answers itself by default but should resolve like any other, e.g.
	 * for a test world's "test." (NULL-terminated list, may be NULL). */
	const char *const *transparent_zones;
};

struct resolver;

typedef void (*resolver_cb)(void *arg, const struct resolver_answer *ans);

/* Creates a resolver. Returns NULL on error (logged): the trust anchor file
 * unreadable, a forwarder that does not parse, libunbound failing. */
struct resolver *resolver_new(const struct resolver_config *cfg);
/* Cancels every outstanding query (no callbacks) and frees. NULL ok. */
void resolver_free(struct resolver *r);

int resolver_fd(const struct resolver *r);
/* Delivers finished answers. Returns 0 or -EIO. */
int resolver_process(struct resolver *r);
/* Ends queries older than the timeout (callback with RESOLVER_E_TIMEOUT). */
void resolver_expire(struct resolver *r);
/* Milliseconds until the next query times out; -1 when none is pending. */
int resolver_next_timeout_ms(const struct resolver *r);
/* Outstanding queries. */
size_t resolver_pending(const struct resolver *r);

/* Starts a query for name (presentation form, trailing dot optional) and
 * type (class IN). Returns 0 (the callback will run exactly once, possibly
 * before this returns when the answer is cached), -EINVAL (bad name) or
 * -ENOMEM/-EIO (the callback will not run). */
int resolver_query(struct resolver *r, const char *name, uint16_t type, resolver_cb cb, void *arg);

/* Cache statistics (for tests and metrics). */
void resolver_cache_stats(const struct resolver *r, size_t *entries, uint64_t *hits,
			  uint64_t *misses);

/* The status of one RRset lookup, reduced for policy. */
enum resolver_rrstatus {
	RESOLVER_RR_SECURE = 0,	 /* records, DNSSEC-secure */
	RESOLVER_RR_INSECURE,	 /* records, not DNSSEC-secure */
	RESOLVER_RR_NONE_SECURE, /* provably none (NXDOMAIN/NODATA), secure */
	RESOLVER_RR_NONE,	 /* none, insecure */
	RESOLVER_RR_FAIL,	 /* bogus, SERVFAIL, timeout: temporary failure */
};
const char *resolver_rrstatus_str(enum resolver_rrstatus s);

/* What DANE means for one MX host (RFC 7672 2.2). */
enum resolver_dane {
	RESOLVER_DANE_NONE = 0, /* DANE does not apply: opportunistic TLS */
	RESOLVER_DANE_USABLE,	/* secure usable TLSA: TLS with that certificate */
	RESOLVER_DANE_UNUSABLE, /* secure TLSA, none usable: TLS mandatory, unauthenticated */
	RESOLVER_DANE_TEMPFAIL, /* secure host, TLSA lookup failed: defer, never plaintext */
};
const char *resolver_dane_str(enum resolver_dane d);

struct resolver_host {
	char name[RESOLVER_NAME_MAX];	    /* MX exchange as published */
	char final_name[RESOLVER_NAME_MAX]; /* after address CNAMEs ("" = same) */
	uint16_t preference;
	bool implicit;			    /* implicit MX (the domain itself) */
	enum resolver_rrstatus addr_status; /* A and AAAA together */
	size_t n_v4, n_v6;
	struct in_addr v4[RESOLVER_ADDR_MAX];
	struct in6_addr v6[RESOLVER_ADDR_MAX];
	enum resolver_rrstatus tlsa_status;
	char tlsa_name[RESOLVER_NAME_MAX];  /* the name the TLSA RRset was found at */
	size_t n_tlsa;
	struct dane_tlsa tlsa[RESOLVER_RDATA_MAX]; /* data points into tlsa_blob */
	uint8_t *tlsa_blob;		    /* owned by the result */
	size_t tlsa_blob_len;
	uint32_t ttl;			    /* smallest TTL of what was used */
	enum resolver_dane dane;
	char error[RESOLVER_ERROR_MAX];	    /* why addr or TLSA failed, "" when not */
};

struct resolver_domain {
	char domain[RESOLVER_NAME_MAX];
	enum resolver_rrstatus mx_status;
	bool null_mx;	/* RFC 7505: the domain accepts no mail */
	bool nxdomain;
	char error[RESOLVER_ERROR_MAX];
	size_t n_hosts;
	struct resolver_host hosts[RESOLVER_MX_MAX]; /* preference order */
};

typedef void (*resolver_domain_cb)(void *arg, const struct resolver_domain *res);

/* Resolves MX, then A/AAAA and TLSA of every MX host, concurrently. The
 * callback runs exactly once when everything is known (on failure with
 * mx_status / the hosts' statuses RESOLVER_RR_FAIL). Returns 0, -EINVAL or
 * -ENOMEM (no callback then). The result is valid during the callback. */
int resolver_lookup_domain(struct resolver *r, const char *domain, resolver_domain_cb cb,
			   void *arg);

/* A copy of res that the caller owns (TLSA data included), for keeping a
 * result beyond the callback; NULL only when res is NULL (never fails
 * otherwise: xmalloc). Free with resolver_domain_free() (NULL ok). */
struct resolver_domain *resolver_domain_dup(const struct resolver_domain *res);
void resolver_domain_free(struct resolver_domain *res);

#endif
