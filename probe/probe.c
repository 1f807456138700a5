/* probe.c - the probe engine: one epoll loop over the resolver and every
 * SMTP connection. See probe.h for the contract. */
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "log.h"

enum conn_state { C_CONNECT, C_BANNER, C_EHLO, C_STARTTLS, C_TLS, C_DONE };

struct tjob;

struct conn {
	struct engine *e;
	struct tjob *job;
	struct probe_mx *mx;
	struct probe_addr *pa;
	struct conn *prev, *next; /* live connections */
	int fd;
	enum conn_state st;
	uint64_t t0, deadline;
	struct smtp_reader rd;
	uint8_t in[4096];
	size_t in_len;
	WOLFSSL *ssl;
	const char *sni; /* MX name, NULL for an address target */
};

struct tjob {
	struct probe_target t;
	size_t pending; /* connections (and the DNS lookup) still running */
	bool finished;
	uint64_t t0;
};

struct engine {
	const struct probe_config *cfg;
	struct resolver *r;
	WOLFSSL_CTX *ctx;
	int ep;
	struct tjob *jobs;
	size_t n, next_start, next_report, active;
	struct conn *conns;
	probe_done_cb cb;
	void *arg;
	char helo[256];
};

static int resolver_marker; /* epoll data for the resolver fd */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *probe_class_str(enum probe_class c)
{
	switch (c) {
	case PROBE_CLASS_PLAINTEXT:
		return "plaintext";
	case PROBE_CLASS_TLS:
		return "tls";
	case PROBE_CLASS_DANE:
		return "dane";
	default:
		return "unknown";
	}
}

const char *probe_verdict_str(enum probe_verdict v)
{
	static const char *const names[] = {
		[PROBE_DANE] = "dane",		    [PROBE_TLS] = "tls",
		[PROBE_TLS_UNAUTH] = "tls-unauthenticated", [PROBE_PLAINTEXT] = "plaintext",
		[PROBE_DANE_FAIL] = "dane-fail",    [PROBE_TLS_FAIL] = "tls-fail",
		[PROBE_DNS_FAIL] = "dns-fail",	    [PROBE_CONNECT_FAIL] = "connect-fail",
	};

	return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "connect-fail";
}

enum probe_class probe_verdict_class(enum probe_verdict v)
{
	switch (v) {
	case PROBE_DANE:
		return PROBE_CLASS_DANE;
	case PROBE_TLS:
	case PROBE_TLS_UNAUTH:
		return PROBE_CLASS_TLS;
	case PROBE_PLAINTEXT:
		return PROBE_CLASS_PLAINTEXT;
	default:
		return PROBE_CLASS_UNKNOWN;
	}
}

/* ---- finishing -------------------------------------------------------- */

static void target_free(struct probe_target *t)
{
	size_t i, j, k;

	for (i = 0; i < t->n_mx; i++) {
		for (j = 0; j < t->mx[i].n_addrs; j++)
			for (k = 0; k < t->mx[i].addrs[j].n_chain; k++)
				free(t->mx[i].addrs[j].chain[k].der);
		free(t->mx[i].addrs);
		t->mx[i].addrs = NULL;
	}
	resolver_domain_free(t->dns);
	t->dns = NULL;
}

static void job_classify(struct tjob *job)
{
	struct probe_target *t = &job->t;
	enum probe_class cls = PROBE_CLASS_DANE;
	size_t i, j, seen = 0;

	for (i = 0; i < t->n_mx; i++) {
		struct probe_mx *mx = &t->mx[i];

		if (mx->n_addrs == 0) {
			enum probe_class c = probe_verdict_class(mx->verdict);

			seen++;
			if (c < cls)
				cls = c;
		}
		for (j = 0; j < mx->n_addrs; j++) {
			enum probe_class c = probe_verdict_class(mx->addrs[j].verdict);

			seen++;
			if (c < cls)
				cls = c;
		}
	}
	t->cls = seen ? cls : PROBE_CLASS_UNKNOWN;
}

static void engine_flush(struct engine *e)
{
	while (e->next_report < e->n && e->jobs[e->next_report].finished) {
		struct tjob *job = &e->jobs[e->next_report++];

		e->cb(e->arg, &job->t);
		target_free(&job->t);
	}
}

static void job_unref(struct engine *e, struct tjob *job)
{
	if (--job->pending > 0)
		return;
	job->t.ms_total = (int64_t)(now_ms() - job->t0);
	job_classify(job);
	job->finished = true;
	e->active--;
	engine_flush(e);
}

/* ---- connections ------------------------------------------------------ */

static void conn_close(struct conn *c)
{
	struct engine *e = c->e;

	if (c->fd >= 0) {
		/* A polite QUIT; the reply is not awaited. */
		if (c->ssl && c->pa->tls) {
			wolfSSL_write(c->ssl, "QUIT\r\n", 6);
			wolfSSL_shutdown(c->ssl);
		} else if (!c->ssl && c->st >= C_EHLO) {
			if (write(c->fd, "QUIT\r\n", 6) < 0) {
				/* nothing to do: the connection goes anyway */
			}
		}
		epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (c->ssl)
		wolfSSL_free(c->ssl);
	c->ssl = NULL;
}

static void conn_finish(struct conn *c, enum probe_verdict v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_finish(struct conn *c, enum probe_verdict v, const char *fmt, ...)
{
	struct engine *e = c->e;
	struct tjob *job = c->job;
	va_list ap;

	c->pa->verdict = v;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(c->pa->reason, sizeof(c->pa->reason), fmt, ap);
		va_end(ap);
	}
	c->pa->ms_total = (int64_t)(now_ms() - c->t0);
	conn_close(c);
	c->st = C_DONE;
	if (c->prev)
		c->prev->next = c->next;
	else
		e->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	job_unref(e, job);
}

static enum resolver_dane conn_dane(const struct conn *c)
{
	return c->mx->host ? c->mx->host->dane : RESOLVER_DANE_NONE;
}

/* DANE applies (usable or not): TLS is mandatory. */
static bool conn_tls_required(const struct conn *c)
{
	enum resolver_dane d = conn_dane(c);

	return d == RESOLVER_DANE_USABLE || d == RESOLVER_DANE_UNUSABLE;
}

static void conn_set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	epoll_ctl(c->e->ep, EPOLL_CTL_MOD, c->fd, &e);
}

static int conn_send(struct conn *c, const char *line)
{
	size_t n = strlen(line);
	ssize_t w = write(c->fd, line, n);

	/* Commands are a few bytes on an idle socket: a short write means
	 * the connection is broken. */
	return w == (ssize_t)n ? 0 : -EIO;
}

static void conn_stage(struct conn *c, enum conn_state st, unsigned int timeout_ms)
{
	c->st = st;
	c->deadline = now_ms() + timeout_ms;
}

static void cert_describe(struct probe_cert *pc)
{
	WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_buffer(pc->der, (int)pc->len,
								WOLFSSL_FILETYPE_ASN1);

	wc_Sha256Hash(pc->der, (word32)pc->len, pc->sha256);
	if (!x) {
		snprintf(pc->subject, sizeof(pc->subject), "(unparsable certificate)");
		return;
	}
	if (!wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_subject_name(x), pc->subject,
				       sizeof(pc->subject)))
		pc->subject[0] = '\0';
	if (!wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_issuer_name(x), pc->issuer,
				       sizeof(pc->issuer)))
		pc->issuer[0] = '\0';
	wolfSSL_X509_free(x);
}

static void conn_tls_done(struct conn *c)
{
	struct probe_addr *pa = c->pa;
	WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(c->ssl);
	const struct resolver_host *h = c->mx->host;
	const uint8_t *ders[DANE_CHAIN_MAX];
	size_t lens[DANE_CHAIN_MAX];
	const char *names[2];
	struct dane_input in = { 0 };
	int i, n = chain ? wolfSSL_get_chain_count(chain) : 0;
	const char *v = wolfSSL_get_version(c->ssl), *ci = wolfSSL_get_cipher_name(c->ssl);

	pa->tls = true;
	snprintf(pa->tls_version, sizeof(pa->tls_version), "%s", v ? v : "?");
	snprintf(pa->cipher, sizeof(pa->cipher), "%s", ci ? ci : "?");
	for (i = 0; i < n && pa->n_chain < DANE_CHAIN_MAX; i++) {
		const unsigned char *der = wolfSSL_get_chain_cert(chain, i);
		int len = wolfSSL_get_chain_length(chain, i);
		struct probe_cert *pc = &pa->chain[pa->n_chain];

		if (!der || len <= 0)
			continue;
		pc->der = xmalloc((size_t)len);
		memcpy(pc->der, der, (size_t)len);
		pc->len = (size_t)len;
		cert_describe(pc);
		ders[pa->n_chain] = pc->der;
		lens[pa->n_chain] = pc->len;
		pa->n_chain++;
	}
	if (conn_dane(c) == RESOLVER_DANE_NONE) {
		conn_finish(c, PROBE_TLS, "TLS; no DNSSEC-validated TLSA records");
		return;
	}
	in.tlsa = h->tlsa;
	in.n_tlsa = h->n_tlsa;
	in.chain = ders;
	in.chain_len = lens;
	in.n_chain = pa->n_chain;
	names[0] = h->name;
	names[1] = h->final_name;
	in.names = names;
	in.n_names = h->final_name[0] ? 2 : 1;
	in.no_name_checks = true; /* RFC 7672 3.1.1: DANE-EE has no name checks */
	pa->dane_checked = true;
	if (dane_verify(&in, &pa->dane) != 0)
		pa->dane.result = DANE_NO_MATCH;
	switch (pa->dane.result) {
	case DANE_MATCH:
		conn_finish(c, PROBE_DANE, "certificate matches TLSA %u %u %u at depth %d",
			    h->tlsa[pa->dane.record].usage, h->tlsa[pa->dane.record].selector,
			    h->tlsa[pa->dane.record].mtype, pa->dane.depth);
		break;
	case DANE_UNUSABLE:
	case DANE_NO_RECORDS:
		conn_finish(c, PROBE_TLS_UNAUTH, "TLSA records present but none usable: TLS required, unauthenticated");
		break;
	default:
		conn_finish(c, PROBE_DANE_FAIL, "DANE verification failed: %s",
			    dane_result_str(pa->dane.result));
		break;
	}
}

static void conn_tls_step(struct conn *c)
{
	int rc = wolfSSL_connect(c->ssl), err;
	char buf[WOLFSSL_MAX_ERROR_SZ];

	if (rc == WOLFSSL_SUCCESS) {
		conn_tls_done(c);
		return;
	}
	err = wolfSSL_get_error(c->ssl, rc);
	if (err == WOLFSSL_ERROR_WANT_READ) {
		conn_set_events(c, EPOLLIN);
		return;
	}
	if (err == WOLFSSL_ERROR_WANT_WRITE) {
		conn_set_events(c, EPOLLOUT);
		return;
	}
	wolfSSL_ERR_error_string_n((unsigned long)err, buf, sizeof(buf));
	conn_finish(c, conn_tls_required(c) ? PROBE_DANE_FAIL : PROBE_TLS_FAIL,
		    "TLS handshake failed: %s (%d)", buf, err);
}

static void conn_start_tls(struct conn *c)
{
	struct engine *e = c->e;

	c->ssl = wolfSSL_new(e->ctx);
	if (!c->ssl || wolfSSL_set_fd(c->ssl, c->fd) != WOLFSSL_SUCCESS) {
		conn_finish(c, PROBE_TLS_FAIL, "TLS set-up failed");
		return;
	}
	if (c->sni && wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, c->sni,
				     (unsigned short)strlen(c->sni)) != WOLFSSL_SUCCESS) {
		conn_finish(c, PROBE_TLS_FAIL, "cannot set SNI %s", c->sni);
		return;
	}
	conn_stage(c, C_TLS, e->cfg->tls_timeout_ms);
	conn_tls_step(c);
}

static void first_line(const struct smtp_reply *r, char *buf, size_t size)
{
	if (!smtp_reply_line(r, 0, buf, size))
		buf[0] = '\0';
}

/* One complete reply in state c->st. Returns false when c is finished. */
static bool conn_reply(struct conn *c, const struct smtp_reply *r)
{
	struct engine *e = c->e;
	struct probe_addr *pa = c->pa;
	char line[PROBE_TEXT_MAX], cmd[300];
	size_t i;

	switch (c->st) {
	case C_BANNER:
		pa->banner_code = r->code;
		first_line(r, line, sizeof(line));
		snprintf(pa->banner, sizeof(pa->banner), "%d %s", r->code, line);
		if (r->code != 220) {
			conn_finish(c, PROBE_CONNECT_FAIL, "server greeting %d: no SMTP service", r->code);
			return false;
		}
		snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", e->helo);
		if (conn_send(c, cmd) != 0) {
			conn_finish(c, PROBE_CONNECT_FAIL, "connection lost sending EHLO");
			return false;
		}
		conn_stage(c, C_EHLO, e->cfg->smtp_timeout_ms);
		return true;
	case C_EHLO:
		if (r->code == 250) {
			for (i = 1; i < r->n_lines && pa->n_ehlo < PROBE_EHLO_MAX; i++) {
				smtp_reply_line(r, i, pa->ehlo[pa->n_ehlo], sizeof(pa->ehlo[0]));
				if (strcasecmp(pa->ehlo[pa->n_ehlo], "STARTTLS") == 0)
					pa->starttls_offered = true;
				pa->n_ehlo++;
			}
		}
		if (!pa->starttls_offered) {
			if (conn_tls_required(c))
				conn_finish(c, PROBE_DANE_FAIL,
					    "STARTTLS not offered, but DANE requires TLS");
			else
				conn_finish(c, PROBE_PLAINTEXT, "STARTTLS not offered");
			return false;
		}
		if (conn_send(c, "STARTTLS\r\n") != 0) {
			conn_finish(c, PROBE_CONNECT_FAIL, "connection lost sending STARTTLS");
			return false;
		}
		conn_stage(c, C_STARTTLS, e->cfg->smtp_timeout_ms);
		return true;
	case C_STARTTLS:
		pa->starttls_code = r->code;
		if (r->code != 220) {
			first_line(r, line, sizeof(line));
			conn_finish(c, conn_tls_required(c) ? PROBE_DANE_FAIL : PROBE_TLS_FAIL,
				    "STARTTLS refused: %d %s", r->code, line);
			return false;
		}
		/* Anything after the 220 would be injected plaintext (CVE-2011-0411). */
		if (c->in_len > 0 || smtp_reader_busy(&c->rd)) {
			conn_finish(c, conn_tls_required(c) ? PROBE_DANE_FAIL : PROBE_TLS_FAIL,
				    "data after the STARTTLS reply (command injection)");
			return false;
		}
		conn_start_tls(c);
		return false; /* no more plaintext replies to read */
	default:
		return false;
	}
}

static void conn_read(struct conn *c)
{
	ssize_t n;
	size_t used;
	struct smtp_reply *r = NULL;
	int rc;

	n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_finish(c, c->st == C_BANNER ? PROBE_CONNECT_FAIL
			       : conn_tls_required(c) ? PROBE_DANE_FAIL : PROBE_CONNECT_FAIL,
			    "connection closed by the server (%s)",
			    c->st == C_BANNER ? "before the greeting" : c->st == C_EHLO ? "after EHLO" : "after STARTTLS");
		return;
	}
	c->in_len += (size_t)n;
	r = xmalloc(sizeof(*r));
	while (c->in_len > 0) {
		rc = smtp_reader_feed(&c->rd, c->in, c->in_len, &used, r);
		if (rc < 0) {
			conn_finish(c, conn_tls_required(c) ? PROBE_DANE_FAIL : PROBE_CONNECT_FAIL,
				    "malformed SMTP reply");
			break;
		}
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (rc == 0)
			break;
		if (!conn_reply(c, r))
			break;
	}
	free(r);
}

static void conn_event(struct conn *c, uint32_t ev)
{
	int err = 0;
	socklen_t len = sizeof(err);

	switch (c->st) {
	case C_CONNECT:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			conn_finish(c, PROBE_CONNECT_FAIL, "connect: %s", strerror(err));
			return;
		}
		c->pa->ms_connect = (int64_t)(now_ms() - c->t0);
		conn_set_events(c, EPOLLIN);
		conn_stage(c, C_BANNER, c->e->cfg->smtp_timeout_ms);
		return;
	case C_BANNER:
	case C_EHLO:
	case C_STARTTLS:
		if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
			conn_read(c);
		return;
	case C_TLS:
		conn_tls_step(c);
		return;
	case C_DONE:
		return;
	}
}

static void conn_timeout(struct conn *c)
{
	static const char *const what[] = { "connect", "greeting", "EHLO reply", "STARTTLS reply",
					    "TLS handshake", "" };
	enum probe_verdict v = PROBE_CONNECT_FAIL;

	if (c->st == C_TLS || c->st == C_STARTTLS)
		v = conn_tls_required(c) ? PROBE_DANE_FAIL : PROBE_TLS_FAIL;
	conn_finish(c, v, "timeout waiting for %s", what[c->st]);
}

static void conn_start(struct engine *e, struct tjob *job, struct probe_mx *mx, struct probe_addr *pa)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	struct epoll_event ev = { .events = EPOLLOUT };
	int rc;

	c->e = e;
	c->job = job;
	c->mx = mx;
	c->pa = pa;
	c->fd = -1;
	c->t0 = now_ms();
	c->sni = mx->host ? mx->host->name : NULL;
	smtp_reader_init(&c->rd);
	c->next = e->conns;
	if (c->next)
		c->next->prev = c;
	e->conns = c;
	job->pending++;
	conn_stage(c, C_CONNECT, e->cfg->connect_timeout_ms);
	if (pa->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(e->cfg->port);
		inet_pton(AF_INET, pa->addr, &s4->sin_addr);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(e->cfg->port);
		inet_pton(AF_INET6, pa->addr, &s6->sin6_addr);
		sl = sizeof(*s6);
	}
	c->fd = socket(pa->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_finish(c, PROBE_CONNECT_FAIL, "socket: %s", strerror(errno));
		return;
	}
	rc = connect(c->fd, (struct sockaddr *)&ss, sl);
	if (rc < 0 && errno != EINPROGRESS) {
		conn_finish(c, PROBE_CONNECT_FAIL, "connect: %s", strerror(errno));
		return;
	}
	ev.data.ptr = c;
	if (epoll_ctl(e->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		conn_finish(c, PROBE_CONNECT_FAIL, "epoll: %s", strerror(errno));
}

/* ---- targets ---------------------------------------------------------- */

static bool family_wanted(const struct engine *e, int family)
{
	if (!e->cfg->ipv4 && !e->cfg->ipv6)
		return true;
	return family == AF_INET ? e->cfg->ipv4 : e->cfg->ipv6;
}

static void dns_done(void *arg, const struct resolver_domain *res)
{
	struct tjob *job = arg;
	struct probe_target *t = &job->t;
	size_t i, j;

	t->dns = resolver_domain_dup(res);
	if (res->mx_status == RESOLVER_RR_FAIL)
		snprintf(t->reason, sizeof(t->reason), "MX lookup failed: %s", res->error);
	else if (res->nxdomain)
		snprintf(t->reason, sizeof(t->reason), "no such domain");
	else if (res->null_mx)
		snprintf(t->reason, sizeof(t->reason), "null MX (RFC 7505): the domain accepts no mail");
	t->n_mx = t->dns->n_hosts;
	for (i = 0; i < t->n_mx; i++) {
		struct probe_mx *mx = &t->mx[i];
		const struct resolver_host *h = &t->dns->hosts[i];

		mx->host = h;
		if (h->addr_status == RESOLVER_RR_FAIL) {
			mx->verdict = PROBE_DNS_FAIL;
			snprintf(mx->reason, sizeof(mx->reason), "address lookup failed: %s", h->error);
			continue;
		}
		if (h->dane == RESOLVER_DANE_TEMPFAIL) {
			mx->verdict = PROBE_DNS_FAIL;
			snprintf(mx->reason, sizeof(mx->reason),
				 "TLSA lookup failed for a DNSSEC-secure host (mail would be deferred): %s",
				 h->error);
			continue;
		}
		if (h->n_v4 + h->n_v6 == 0) {
			mx->verdict = PROBE_DNS_FAIL;
			snprintf(mx->reason, sizeof(mx->reason), "no address records");
			continue;
		}
		mx->addrs = xcalloc(h->n_v4 + h->n_v6, sizeof(*mx->addrs));
		for (j = 0; j < h->n_v4 + h->n_v6; j++) {
			struct probe_addr *pa = &mx->addrs[mx->n_addrs];

			pa->family = j < h->n_v4 ? AF_INET : AF_INET6;
			if (j < h->n_v4)
				inet_ntop(AF_INET, &h->v4[j], pa->addr, sizeof(pa->addr));
			else
				inet_ntop(AF_INET6, &h->v6[j - h->n_v4], pa->addr, sizeof(pa->addr));
			mx->n_addrs++;
		}
	}
}

static void target_connect_all(struct engine *e, struct tjob *job)
{
	struct probe_target *t = &job->t;
	size_t i, j;

	for (i = 0; i < t->n_mx; i++) {
		struct probe_mx *mx = &t->mx[i];

		for (j = 0; j < mx->n_addrs; j++) {
			if (!family_wanted(e, mx->addrs[j].family)) {
				mx->addrs[j].verdict = PROBE_CONNECT_FAIL;
				continue;
			}
			conn_start(e, job, mx, &mx->addrs[j]);
		}
	}
}

struct dns_ctx {
	struct engine *e;
	struct tjob *job;
};

static void dns_done_cb(void *arg, const struct resolver_domain *res)
{
	struct dns_ctx *d = arg;
	struct probe_target *t = &d->job->t;
	size_t i, j, kept;

	dns_done(d->job, res);
	/* Drop the addresses of families not wanted before connecting. */
	for (i = 0; i < t->n_mx; i++) {
		struct probe_mx *mx = &t->mx[i];

		for (j = 0, kept = 0; j < mx->n_addrs; j++)
			if (family_wanted(d->e, mx->addrs[j].family))
				mx->addrs[kept++] = mx->addrs[j];
		mx->n_addrs = kept;
		if (kept == 0 && mx->addrs) {
			mx->verdict = PROBE_DNS_FAIL;
			snprintf(mx->reason, sizeof(mx->reason), "no address of the requested family");
		}
	}
	target_connect_all(d->e, d->job);
	job_unref(d->e, d->job);
	free(d);
}

static int parse_addr(const char *in, char *out, size_t size, int *family)
{
	char buf[RESOLVER_NAME_MAX];
	size_t n = strlen(in);
	struct in6_addr a6;
	struct in_addr a4;

	if (n >= sizeof(buf))
		return -1;
	if (in[0] == '[' && n > 2 && in[n - 1] == ']') {
		memcpy(buf, in + 1, n - 2);
		buf[n - 2] = '\0';
	} else {
		memcpy(buf, in, n + 1);
	}
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		*family = AF_INET;
		inet_ntop(AF_INET, &a4, out, (socklen_t)size);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &a6) == 1) {
		*family = AF_INET6;
		inet_ntop(AF_INET6, &a6, out, (socklen_t)size);
		return 0;
	}
	return -1;
}

static void target_start(struct engine *e, struct tjob *job, const char *input)
{
	struct probe_target *t = &job->t;
	struct probe_addr *pa;
	int family;
	char addr[48];

	snprintf(t->input, sizeof(t->input), "%s", input);
	t->started = (int64_t)time(NULL);
	job->t0 = now_ms();
	job->pending = 1; /* held while starting */
	e->active++;
	if (parse_addr(input, addr, sizeof(addr), &family) == 0) {
		t->is_addr = true;
		t->n_mx = 1;
		pa = xcalloc(1, sizeof(*pa));
		pa->family = family;
		snprintf(pa->addr, sizeof(pa->addr), "%s", addr);
		t->mx[0].addrs = pa;
		t->mx[0].n_addrs = 1;
		conn_start(e, job, &t->mx[0], pa);
		job_unref(e, job);
		return;
	}
	{
		struct dns_ctx *d = xcalloc(1, sizeof(*d));

		d->e = e;
		d->job = job;
		if (resolver_lookup_domain(e->r, input, dns_done_cb, d) != 0) {
			free(d);
			snprintf(t->reason, sizeof(t->reason), "not a domain name or address");
			job_unref(e, job);
		}
	}
}

/* ---- the loop --------------------------------------------------------- */

static int engine_timeout(struct engine *e)
{
	uint64_t now = now_ms(), min = UINT64_MAX;
	const struct conn *c;
	int rt = resolver_next_timeout_ms(e->r), t;

	for (c = e->conns; c; c = c->next)
		if (c->deadline < min)
			min = c->deadline;
	t = min == UINT64_MAX ? -1 : (min <= now ? 0 : (int)(min - now));
	if (rt >= 0 && (t < 0 || rt < t))
		t = rt;
	return t < 0 || t > 1000 ? 1000 : t;
}

static void engine_expire(struct engine *e)
{
	uint64_t now = now_ms();
	struct conn *c, *next;

	resolver_expire(e->r);
again:
	for (c = e->conns; c; c = next) {
		next = c->next;
		if (c->deadline <= now) {
			conn_timeout(c);
			goto again; /* the list changed */
		}
	}
}

int probe_run(const struct probe_config *cfg, const char *const *targets, size_t n,
	      probe_done_cb cb, void *arg)
{
	struct engine e = { 0 };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &resolver_marker };
	struct epoll_event evs[64];
	int rc = 0, i, nev;

	e.cfg = cfg;
	e.cb = cb;
	e.arg = arg;
	e.n = n;
	e.ep = -1;
	snprintf(e.helo, sizeof(e.helo), "%s", cfg->helo_name ? cfg->helo_name : "tlsgate-probe.invalid");
	e.r = resolver_new(cfg->resolver);
	if (!e.r)
		return -EINVAL;
	if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
		rc = -EIO;
		goto out;
	}
	e.ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (!e.ctx) {
		rc = -ENOMEM;
		goto out;
	}
	/* Certificates are judged by DANE (dane.h), not by a CA store. */
	wolfSSL_CTX_set_verify(e.ctx, WOLFSSL_VERIFY_NONE, NULL);
	e.ep = epoll_create1(EPOLL_CLOEXEC);
	if (e.ep < 0 || epoll_ctl(e.ep, EPOLL_CTL_ADD, resolver_fd(e.r), &ev) < 0) {
		rc = -errno;
		goto out;
	}
	e.jobs = xcalloc(n ? n : 1, sizeof(*e.jobs));
	while (e.next_report < e.n) {
		while (e.active < (cfg->concurrency ? cfg->concurrency : 8) && e.next_start < e.n) {
			size_t k = e.next_start++;

			target_start(&e, &e.jobs[k], targets[k]);
		}
		if (e.next_report >= e.n)
			break;
		nev = epoll_wait(e.ep, evs, 64, engine_timeout(&e));
		if (nev < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		for (i = 0; i < nev; i++) {
			if (evs[i].data.ptr == &resolver_marker) {
				resolver_process(e.r);
				continue;
			}
			/* A connection finished earlier in this batch is gone from
			 * the epoll set, but its event may still be here: look it up. */
			{
				struct conn *c;

				for (c = e.conns; c && c != evs[i].data.ptr; c = c->next)
					;
				if (c)
					conn_event(c, evs[i].events);
			}
		}
		engine_expire(&e);
	}
out:
	while (e.conns)
		conn_finish(e.conns, PROBE_CONNECT_FAIL, "aborted");
	if (e.jobs) {
		size_t k;

		for (k = e.next_report; k < e.n; k++)
			target_free(&e.jobs[k].t);
	}
	free(e.jobs);
	if (e.ep >= 0)
		close(e.ep);
	resolver_free(e.r);
	if (e.ctx)
		wolfSSL_CTX_free(e.ctx);
	return rc;
}
