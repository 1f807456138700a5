/* dnslearn.c - see dnslearn.h for the contract. */
#include "dnslearn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>

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

/* A query seen leaving the inside, waiting for its answer. */
struct dnslearn_query {
	int64_t expires; /* 0: a free slot */
	uint8_t client[16], server[16];
	uint16_t cport, id, qtype, qclass;
	uint32_t ifindex;
	uint8_t family, proto;
	char qname[STORE_NAME_MAX]; /* lower case, no trailing dot */
};

/* The tagger's older event: 16 bytes of header, no endpoints. */
#define DNSLEARN_EVENT_V1_HDR 16
_Static_assert(sizeof(struct dnslearn_event_v2) == 56, "dns event v2 layout");
_Static_assert(sizeof(struct tlsgate_dns_event) == DNSLEARN_EVENT_V1_HDR + TLSGATE_DNS_COPY_MAX ||
		       sizeof(struct tlsgate_dns_event) ==
			       sizeof(struct dnslearn_event_v2) + TLSGATE_DNS_COPY_MAX,
	       "tlsgate_dns_event is neither layout dnslearn reads");

struct dnslearn {
	struct ring_buffer *rb;
	struct store *store;
	dnslearn_probe_fn probe;
	void *arg;
	struct dnslearn_host *hosts; /* DNSLEARN_HOSTS, replaced round robin */
	size_t next;
	struct dnslearn_query *queries; /* DNSLEARN_QUERIES */
	uint32_t inside[DNSLEARN_INSIDE_MAX];
	size_t n_inside;
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

/* Learns from an answer that matched its query, only about the names the
 * question asked: MX records owned by the question's name (or the end of
 * its CNAME chain), and addresses of the question's name or of this
 * answer's MX hosts (directly or through CNAMEs in the message) when they
 * are known MX hosts. Records about other names (what a resolver would
 * scrub as out of bailiwick) teach nothing. */
#define DNSLEARN_NAMES 16
static void learn_answer(struct dnslearn *l, const struct dns_msg *m, int64_t now)
{
	if (!m->qr || m->rcode != 0 || m->n_qd != 1)
		return;
	char names[DNSLEARN_NAMES][STORE_NAME_MAX]; /* whose addresses count */
	size_t n_names = 0;
	char qname[STORE_NAME_MAX], qfinal[STORE_NAME_MAX];
	name_norm(m->qd[0].name, qname, sizeof(qname));
	cname_final(m, qname, qfinal, sizeof(qfinal));
	snprintf(names[n_names++], STORE_NAME_MAX, "%s", qname);
	for (size_t i = 0; i < m->n_rr; i++) {
		const struct dns_rr *rr = &m->rr[i];
		char domain[STORE_NAME_MAX], host[STORE_NAME_MAX];
		if (rr->type != DNS_TYPE_MX || rr->rclass != DNS_CLASS_IN ||
		    rr->section != DNS_SECTION_ANSWER)
			continue;
		name_norm(rr->name, domain, sizeof(domain));
		if (strcmp(domain, qname) && strcmp(domain, qfinal))
			continue;
		name_norm(rr->u.mx.exchange, host, sizeof(host));
		if (!host[0]) /* a null MX (".") names no host */
			continue;
		/* the domain asked for, not the CNAME's target */
		learn_mx(l, qname, host, rr->ttl, now);
		if (n_names < DNSLEARN_NAMES)
			snprintf(names[n_names++], STORE_NAME_MAX, "%s", host);
	}
	for (size_t i = 0; i < m->n_rr; i++) {
		const struct dns_rr *rr = &m->rr[i];
		if ((rr->type != DNS_TYPE_A && rr->type != DNS_TYPE_AAAA) ||
		    rr->rclass != DNS_CLASS_IN)
			continue;
		char owner[STORE_NAME_MAX], addr[STORE_ADDR_MAX];
		name_norm(rr->name, owner, sizeof(owner));
		struct dnslearn_host *h = NULL;
		for (size_t j = 0; !h && j < n_names; j++) {
			char fin[STORE_NAME_MAX];
			if (!strcmp(names[j], owner) ||
			    !strcmp(cname_final(m, names[j], fin, sizeof(fin)), owner))
				h = host_find(l, names[j], now);
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
}

static bool is_inside(const struct dnslearn *l, uint32_t ifindex)
{
	for (size_t i = 0; i < l->n_inside; i++)
		if (l->inside[i] == ifindex)
			return true;
	return false;
}

void dnslearn_set_inside(struct dnslearn *l, const uint32_t *ifindex, size_t n)
{
	l->n_inside = 0;
	for (size_t i = 0; i < n && l->n_inside < DNSLEARN_INSIDE_MAX; i++)
		l->inside[l->n_inside++] = ifindex[i];
}

/* Remembers a query leaving the inside (one question, standard opcode). */
static void remember_query(struct dnslearn *l, const struct dnslearn_wire *w,
			   const struct dns_msg *m, int64_t now)
{
	if (m->opcode != 0 || m->n_qd != 1 || w->dport != 53 ||
	    (l->n_inside && !is_inside(l, w->ifindex))) {
		l->stats.queries_ignored++;
		return;
	}
	struct dnslearn_query q = {
		.expires = now + DNSLEARN_QUERY_TTL,
		.cport = w->sport,
		.id = m->id,
		.qtype = m->qd[0].qtype,
		.qclass = m->qd[0].qclass,
		.ifindex = w->ifindex,
		.family = (uint8_t)w->family,
		.proto = w->proto,
	};
	memcpy(q.client, w->saddr, 16);
	memcpy(q.server, w->daddr, 16);
	name_norm(m->qd[0].name, q.qname, sizeof(q.qname));
	/* the same query again (a retransmission), else a free or expired
	 * slot, else the oldest outstanding one goes */
	struct dnslearn_query *slot = NULL, *oldest = NULL;
	for (size_t i = 0; i < DNSLEARN_QUERIES; i++) {
		struct dnslearn_query *e = &l->queries[i];
		if (e->expires > now && e->id == q.id && e->cport == q.cport &&
		    e->qtype == q.qtype && e->qclass == q.qclass && e->family == q.family &&
		    e->proto == q.proto && !memcmp(e->client, q.client, 16) &&
		    !memcmp(e->server, q.server, 16) && !strcmp(e->qname, q.qname)) {
			slot = e;
			break;
		}
		if (!slot && e->expires <= now)
			slot = e; /* keep looking for the same query */
		if (!oldest || e->expires < oldest->expires)
			oldest = e;
	}
	if (!slot) {
		slot = oldest;
		l->stats.queries_evicted++;
	}
	*slot = q;
	l->stats.queries++;
}

/* The outstanding query this answer answers, or NULL. */
static struct dnslearn_query *match_query(struct dnslearn *l, const struct dnslearn_wire *w,
					  const struct dns_msg *m, int64_t now)
{
	char qname[STORE_NAME_MAX];
	if (m->opcode != 0 || m->n_qd != 1 || w->sport != 53)
		return NULL;
	name_norm(m->qd[0].name, qname, sizeof(qname));
	for (size_t i = 0; i < DNSLEARN_QUERIES; i++) {
		struct dnslearn_query *e = &l->queries[i];
		if (e->expires <= now || e->id != m->id || e->cport != w->dport ||
		    e->family != (uint8_t)w->family || e->proto != w->proto ||
		    memcmp(e->client, w->daddr, 16) || memcmp(e->server, w->saddr, 16) ||
		    e->qtype != m->qd[0].qtype || e->qclass != m->qd[0].qclass ||
		    strcmp(e->qname, qname))
			continue;
		/* the answer came back from the other side */
		if (l->n_inside ? !is_inside(l, e->ifindex) || is_inside(l, w->ifindex)
				: w->ifindex == e->ifindex)
			continue;
		return e;
	}
	return NULL;
}

void dnslearn_packet(struct dnslearn *l, const struct dnslearn_wire *w, const uint8_t *buf,
		     size_t len, int64_t now)
{
	struct dns_msg *m = NULL;
	if (dns_msg_parse(buf, len, &m, NULL) < 0) {
		l->stats.malformed++;
		return;
	}
	if (!m->qr) {
		remember_query(l, w, m, now);
	} else {
		struct dnslearn_query *q = match_query(l, w, m, now);
		if (q) {
			q->expires = 0; /* one answer per query */
			l->stats.answers_matched++;
			learn_answer(l, m, now);
		} else {
			l->stats.answers_unmatched++;
		}
	}
	dns_msg_free(m);
}

static int dnslearn_event(void *ctx, void *data, size_t size)
{
	struct dnslearn *l = ctx;
	const struct dnslearn_event_v2 *e = data;
	l->stats.messages++;
	if (size == DNSLEARN_EVENT_V1_HDR + TLSGATE_DNS_COPY_MAX) {
		/* an answer without its endpoints: nothing to match it with */
		l->stats.no_endpoints++;
		return 0;
	}
	if (size < sizeof(*e) + TLSGATE_DNS_COPY_MAX || e->len > TLSGATE_DNS_COPY_MAX ||
	    (e->ipver != 4 && e->ipver != 6)) {
		l->stats.malformed++;
		return 0;
	}
	if (e->orig_len > e->len)
		l->stats.truncated++;
	struct dnslearn_wire w = {
		.family = e->ipver == 4 ? AF_INET : AF_INET6,
		.sport = e->sport,
		.dport = e->dport,
		.ifindex = e->ifindex,
		.proto = e->proto,
	};
	memcpy(w.saddr, e->saddr, 16);
	memcpy(w.daddr, e->daddr, 16);
	const uint8_t *msg = e->data;
	size_t len = e->len;
	if (e->proto == IPPROTO_TCP) { /* the first complete length-prefixed message */
		size_t consumed;
		if (dns_tcp_next(e->data, e->len, &msg, &len, &consumed) != 0) {
			l->stats.malformed++;
			return 0;
		}
	} else if (e->proto != IPPROTO_UDP) {
		l->stats.malformed++;
		return 0;
	}
	dnslearn_packet(l, &w, msg, len, (int64_t)time(NULL));
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
	l->queries = xcalloc(DNSLEARN_QUERIES, sizeof(*l->queries));
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
	free(l->queries);
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
