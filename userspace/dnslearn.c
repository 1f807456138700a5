/* dnslearn.c - see dnslearn.h for the contract. */
#include "dnslearn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>

#include "dns_parse.h"
#include "log.h"
#include "tlsgate_shared.h"

struct dnslearn_host {
	char host[STORE_NAME_MAX];   /* MX host name, lower case, no dot */
	char domain[STORE_NAME_MAX]; /* the domain whose MX it is */
	int64_t expires;
	int64_t probed; /* when the domain was last handed to the probe */
};

struct dnslearn {
	struct ring_buffer *rb;
	struct store *store;
	dnslearn_probe_fn probe;
	void *arg;
	struct dnslearn_host *hosts; /* DNSLEARN_HOSTS, replaced round robin */
	size_t next;
	struct dnslearn_stats stats;
};

static void name_norm(const char *in, char *out, size_t size)
{
	size_t n = 0;
	for (; in[n] && n + 1 < size; n++)
		out[n] = (char)tolower((unsigned char)in[n]);
	out[n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[n - 1] = '\0';
}

static struct dnslearn_host *host_find(struct dnslearn *l, const char *host, int64_t now)
{
	for (size_t i = 0; i < DNSLEARN_HOSTS; i++)
		if (l->hosts[i].expires > now && !strcmp(l->hosts[i].host, host))
			return &l->hosts[i];
	return NULL;
}

/* True when the domain (through any of its MX hosts) went to the probe
 * within the interval. */
static bool domain_probed(const struct dnslearn *l, const char *domain, int64_t now)
{
	for (size_t i = 0; i < DNSLEARN_HOSTS; i++)
		if (l->hosts[i].probed && now - l->hosts[i].probed < DNSLEARN_PROBE_INTERVAL &&
		    !strcmp(l->hosts[i].domain, domain))
			return true;
	return false;
}

static void learn_mx(struct dnslearn *l, const char *domain, const char *host, uint32_t ttl,
		     int64_t now)
{
	int64_t expires = now + (ttl < DNSLEARN_TTL_MAX ? ttl : DNSLEARN_TTL_MAX);
	struct dnslearn_host *h = host_find(l, host, now);
	if (!h) {
		h = &l->hosts[l->next];
		l->next = (l->next + 1) % DNSLEARN_HOSTS;
		memset(h, 0, sizeof(*h));
		snprintf(h->host, sizeof(h->host), "%s", host);
	}
	snprintf(h->domain, sizeof(h->domain), "%s", domain);
	h->expires = expires;
	l->stats.mx_learned++;
	if (l->probe && !domain_probed(l, domain, now)) {
		h->probed = now;
		if (l->probe(l->arg, domain) == 0)
			l->stats.probes_requested++;
	}
}

/* Follows CNAMEs inside the message from name; returns the final owner
 * name to look for in A/AAAA records (at most 8 hops). */
static const char *cname_final(const struct dns_msg *m, const char *name, char *buf, size_t size)
{
	char cur[STORE_NAME_MAX];
	snprintf(cur, sizeof(cur), "%s", name);
	for (int hop = 0; hop < 8; hop++) {
		bool moved = false;
		for (size_t i = 0; i < m->n_rr; i++) {
			char owner[STORE_NAME_MAX];
			if (m->rr[i].type != DNS_TYPE_CNAME)
				continue;
			name_norm(m->rr[i].name, owner, sizeof(owner));
			if (strcmp(owner, cur))
				continue;
			name_norm(m->rr[i].u.target, cur, sizeof(cur));
			moved = true;
			break;
		}
		if (!moved)
			break;
	}
	snprintf(buf, size, "%s", cur);
	return buf;
}

void dnslearn_message(struct dnslearn *l, const uint8_t *buf, size_t len, int64_t now)
{
	struct dns_msg *m = NULL;
	if (dns_msg_parse(buf, len, &m, NULL) < 0) {
		l->stats.malformed++;
		return;
	}
	if (!m->qr || m->rcode != 0)
		goto out;
	/* First the MX records (answer section), then every address record
	 * whose owner is a known MX host, directly or through a CNAME. */
	for (size_t i = 0; i < m->n_rr; i++) {
		const struct dns_rr *rr = &m->rr[i];
		char domain[STORE_NAME_MAX], host[STORE_NAME_MAX];
		if (rr->type != DNS_TYPE_MX || rr->rclass != DNS_CLASS_IN ||
		    rr->section != DNS_SECTION_ANSWER)
			continue;
		name_norm(rr->name, domain, sizeof(domain));
		name_norm(rr->u.mx.exchange, host, sizeof(host));
		if (host[0]) /* a null MX (".") names no host */
			learn_mx(l, domain, host, rr->ttl, now);
	}
	for (size_t i = 0; i < m->n_rr; i++) {
		const struct dns_rr *rr = &m->rr[i];
		if ((rr->type != DNS_TYPE_A && rr->type != DNS_TYPE_AAAA) ||
		    rr->rclass != DNS_CLASS_IN)
			continue;
		char owner[STORE_NAME_MAX], addr[STORE_ADDR_MAX];
		name_norm(rr->name, owner, sizeof(owner));
		struct dnslearn_host *h = host_find(l, owner, now);
		/* The owner may be the target of a CNAME of an MX host. */
		for (size_t j = 0; !h && j < m->n_rr; j++) {
			char alias[STORE_NAME_MAX], fin[STORE_NAME_MAX];
			if (m->rr[j].type != DNS_TYPE_CNAME)
				continue;
			name_norm(m->rr[j].name, alias, sizeof(alias));
			if (!strcmp(cname_final(m, alias, fin, sizeof(fin)), owner))
				h = host_find(l, alias, now);
		}
		if (!h)
			continue;
		if (rr->type == DNS_TYPE_A)
			inet_ntop(AF_INET, &rr->u.a, addr, sizeof(addr));
		else
			inet_ntop(AF_INET6, &rr->u.aaaa, addr, sizeof(addr));
		uint32_t ttl = rr->ttl < DNSLEARN_TTL_MAX ? rr->ttl : DNSLEARN_TTL_MAX;
		if (store_addr_mx_set(l->store, addr, h->host, h->domain, false, now + ttl) == 0)
			l->stats.addr_learned++;
	}
out:
	dns_msg_free(m);
}

static int dnslearn_event(void *ctx, void *data, size_t size)
{
	struct dnslearn *l = ctx;
	const struct tlsgate_dns_event *e = data;
	l->stats.messages++;
	if (size < sizeof(*e) || e->len > TLSGATE_DNS_COPY_MAX) {
		l->stats.malformed++;
		return 0;
	}
	if (e->orig_len > e->len)
		l->stats.truncated++;
	const uint8_t *msg = e->data;
	size_t len = e->len;
	if (e->proto == 6) { /* TCP: the first complete length-prefixed message */
		size_t consumed;
		if (dns_tcp_next(e->data, e->len, &msg, &len, &consumed) != 0) {
			l->stats.malformed++;
			return 0;
		}
	}
	dnslearn_message(l, msg, len, (int64_t)time(NULL));
	return 0;
}

struct dnslearn *dnslearn_open(int ring_fd, struct store *store, dnslearn_probe_fn probe,
			       void *arg)
{
	struct dnslearn *l = xcalloc(1, sizeof(*l));
	l->store = store;
	l->probe = probe;
	l->arg = arg;
	l->hosts = xcalloc(DNSLEARN_HOSTS, sizeof(*l->hosts));
	if (ring_fd >= 0) {
		l->rb = ring_buffer__new(ring_fd, dnslearn_event, l, NULL);
		if (!l->rb) {
			log_warn("dnslearn: ring buffer");
			dnslearn_close(l);
			return NULL;
		}
	}
	return l;
}

void dnslearn_close(struct dnslearn *l)
{
	if (!l)
		return;
	ring_buffer__free(l->rb);
	free(l->hosts);
	free(l);
}

int dnslearn_fd(const struct dnslearn *l)
{
	return l->rb ? ring_buffer__epoll_fd(l->rb) : -1;
}

void dnslearn_process(struct dnslearn *l)
{
	if (l->rb)
		ring_buffer__consume(l->rb);
}

const struct dnslearn_stats *dnslearn_stats(const struct dnslearn *l)
{
	return &l->stats;
}
