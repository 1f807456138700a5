/* probe.h - the active prober behind tlsgate-probe: for each target (a
 * recipient domain, or an MX address), resolve with DNSSEC validation
 * (resolver.h), connect to every MX address (IPv4 and IPv6), EHLO,
 * STARTTLS, TLS handshake (wolfSSL, SNI = MX name), DANE verification
 * (dane.h), and classify.
 *
 * Everything runs in one epoll loop: the resolver's fd and non-blocking
 * sockets; at most `concurrency` targets are in progress at a time, each
 * with all of its connections at once. Every stage has its own timeout
 * (DNS per query, TCP connect, each SMTP reply, the TLS handshake).
 *
 * Verdicts per MX address and their class (the domain's class is the
 * weakest of its MX addresses, plaintext < unknown < tls < dane):
 *   dane                 TLSA usable, certificate matched            dane
 *   tls                  TLS, DANE does not apply                    tls
 *   tls-unauthenticated  secure TLSA, none usable (TLS mandatory)    tls
 *   plaintext            no STARTTLS and nothing requires it         plaintext
 *   dane-fail            DANE applies but: no match, no STARTTLS,    unknown
 *                        handshake failed (mail would be deferred)
 *   tls-fail             STARTTLS offered but refused or failed      unknown
 *   dns-fail             address or TLSA lookup failed (bogus,       unknown
 *                        SERVFAIL, timeout): deferred, never plaintext
 *   connect-fail         no connection, timeout, or no 220 banner    unknown
 * A domain without any MX address (NXDOMAIN, null MX, MX lookup failed)
 * is unknown.
 *
 * Ownership: probe_run() owns everything it allocates; results handed to
 * the done callback are valid during the callback only. */
#ifndef TLSGATE_PROBE_H
#define TLSGATE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dane.h"
#include "resolver.h"
#include "smtp_reply.h"

#define PROBE_EHLO_MAX 32
#define PROBE_TEXT_MAX 1024

enum probe_class {
	PROBE_CLASS_PLAINTEXT = 0, /* weakest first: the order is the ranking */
	PROBE_CLASS_UNKNOWN,
	PROBE_CLASS_TLS,
	PROBE_CLASS_DANE,
};

enum probe_verdict {
	PROBE_DANE = 0,
	PROBE_TLS,
	PROBE_TLS_UNAUTH,
	PROBE_PLAINTEXT,
	PROBE_DANE_FAIL,
	PROBE_TLS_FAIL,
	PROBE_DNS_FAIL,
	PROBE_CONNECT_FAIL,
};

const char *probe_class_str(enum probe_class c);
const char *probe_verdict_str(enum probe_verdict v);
enum probe_class probe_verdict_class(enum probe_verdict v);

struct probe_cert {
	uint8_t *der;
	size_t len;
	char subject[PROBE_TEXT_MAX];
	char issuer[PROBE_TEXT_MAX];
	uint8_t sha256[32];
};

/* One connection to one MX address. */
struct probe_addr {
	char addr[48]; /* text form */
	int family;
	enum probe_verdict verdict;
	char reason[PROBE_TEXT_MAX];
	int banner_code;
	char banner[PROBE_TEXT_MAX];
	size_t n_ehlo;
	char ehlo[PROBE_EHLO_MAX][128]; /* capabilities (first EHLO line dropped) */
	bool starttls_offered;
	int starttls_code;
	bool tls;
	char tls_version[32];
	char cipher[96];
	size_t n_chain;
	struct probe_cert chain[DANE_CHAIN_MAX];
	bool dane_checked;
	struct dane_verdict dane;
	int64_t ms_connect, ms_total;
};

/* One MX host: what DNS said, and its addresses. */
struct probe_mx {
	const struct resolver_host *host; /* into target->dns; NULL for an address target */
	enum probe_verdict verdict;	  /* host-level failure when n_addrs == 0 */
	char reason[PROBE_TEXT_MAX];
	size_t n_addrs;
	struct probe_addr *addrs;
};

struct probe_target {
	char input[RESOLVER_NAME_MAX];
	bool is_addr;
	struct resolver_domain *dns; /* NULL for an address target */
	size_t n_mx;
	struct probe_mx mx[RESOLVER_MX_MAX];
	enum probe_class cls;
	char reason[PROBE_TEXT_MAX];  /* why unknown, for domain-level failures */
	int64_t started;	      /* unix seconds */
	int64_t ms_total;
};

struct probe_config {
	const struct resolver_config *resolver;
	const char *helo_name;		/* EHLO argument; default "tlsgate-probe.invalid" */
	uint16_t port;			/* default 25 */
	unsigned int concurrency;	/* targets at once; default 8 */
	unsigned int connect_timeout_ms; /* default 10000 */
	unsigned int smtp_timeout_ms;	/* each reply; default 30000 */
	unsigned int tls_timeout_ms;	/* handshake; default 15000 */
	bool ipv4, ipv6;		/* families to connect to (both when both false) */
};

/* Called once per target, in the order they were given. */
typedef void (*probe_done_cb)(void *arg, const struct probe_target *t);

/* Probes targets[0..n). Returns 0 when every target got a result (of any
 * class), or -errno when the probe could not run at all (resolver or
 * wolfSSL set-up, epoll); no callbacks are made for targets not reached. */
int probe_run(const struct probe_config *cfg, const char *const *targets, size_t n,
	      probe_done_cb cb, void *arg);

#endif
