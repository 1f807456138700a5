/* gate.c - see gate.h for the contract. */
#include "gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <linux/netfilter.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "dane.h"
#include "decide.h"
#include "enforce.h"
#include "log.h"
#include "minisign.h"
#include "policy.h"
#include "smtp_parse.h"
#include "store.h"

#define GATE_EVENTS_MAX 100000 /* rows kept in the events table */
#define GATE_RCPT_HINT_TTL 3600 /* s: address -> domain learned from RCPT TO */
#define GATE_DEFERRED_VERBS 64  /* commands of a withheld segment whose refusal waits,
				   and the replies the server owes before them */
#define GATE_DEFERRED_MAX_NS (10ull * 1000000000ull) /* how long it waits at most */

/* What the gate knows about one flow while it is inspected. */
struct gate_flow {
	enum decide_direction direction;
	enum decide_sender sender;
	bool recipient_secure;
	bool history_known; /* a history row existed at flow start */
	bool recorded;      /* this flow's observation went to history */
	bool decided;       /* a final verdict was acted upon */
	bool block_pending; /* a command in the current segment was refused */
	/* STARTTLS withheld until the MX's DANE state is known (a probe of
	 * it newer than dane_wait_from), at most until dane_wait_until_ns. */
	bool dane_wait;
	int64_t dane_wait_from;
	uint64_t dane_wait_until_ns;
	/* Blocked at a segment that had passed (a copy): what passed after it
	 * is not known yet, so the resets go again with the flow's next
	 * packets that still reach the daemon (copies in the ring, queued
	 * ones), each at the sequence numbers it shows. */
	bool reset_again;
	/* That refusal, or the decision acted upon after the segment: NULL
	 * until one is kept (gate_keep; most flows never need its text). */
	struct decision *pending;
	/* A destination refused before anything is said (locked, DANE lookup
	 * failed, DANE required but absent) that offers STARTTLS: the
	 * STARTTLS is withheld and answered 454, so the client's next command
	 * gets the refusal in SMTP (a reset TLS handshake would hide why). */
	bool starttls_refuse;   /* the current segment's STARTTLS */
	bool starttls_withheld; /* answered; the server still expects server_seq */
	uint32_t server_seq;
	/* A refusal that waits for replies the server owes (gate_block). */
	bool refusal_deferred;
	bool chunking; /* a BDAT line was seen: no more command copies */
	uint64_t deferred_ns;       /* CLOCK_MONOTONIC when it began waiting */
	unsigned int deferred_left; /* replies still pending when it is done */
	struct flowkey_packet deferred; /* the withheld segment (no payload) */
	uint16_t deferred_verbs[GATE_DEFERRED_VERBS];
	size_t n_deferred_verbs;
	int af;
	uint8_t server_addr[16];
	char server_text[STORE_ADDR_MAX];
	/* Names as long as they are (gate_name_set), < STORE_NAME_MAX. */
	char *mx; /* MX name, or the address literal; "" unknown, never NULL */
	char *sender_domain;    /* NULL: none */
	char *recipient_domain; /* NULL: none */
	enum decide_dane dane;
	enum decide_probe probe;
	uint64_t probe_age_s;
	enum decide_level history_level;
	uint16_t history_version;
	bool history_locked;
};

/* What the store says about one destination address, kept for
 * GATE_DEST_FRESH_S so that a busy destination costs no SQLite reads per
 * connection. Direct-mapped by address; written through on locks. */
#define GATE_DEST_SLOTS 4096
#define GATE_DEST_FRESH_S 2
struct gate_dest {
	char addr[STORE_ADDR_MAX]; /* "" = empty slot */
	int64_t loaded;            /* monotonic seconds */
	char mx[STORE_NAME_MAX];
	bool history_known, history_locked;
	enum decide_level history_level;
	uint16_t history_version;
	enum decide_dane dane;
	enum decide_probe probe;
	int64_t probe_time;
	/* the last RCPT domain hint written for this address, kept across
	 * reloads: a busy destination costs one write per GATE_RCPT_HINT_TTL/2.
	 * Last in the struct: gate_dest_load() clears what comes before. */
	char hint_domain[STORE_NAME_MAX];
	int64_t hint_until; /* wall seconds */
};

/* History observations waiting for one write transaction (flushed after
 * each batch of queued packets, and when full). */
#define GATE_PENDING_MAX 1024
struct gate_pending {
	char mx[STORE_NAME_MAX];
	enum store_level level;
	uint16_t version, cipher;
	int64_t time;
};

/* A refusal waiting for the end of the batch of queued packets (see
 * gate_refuse_after_batch). */
#define GATE_REFUSALS_MAX 16
struct gate_refusal {
	struct flowkey_packet p; /* the withheld segment (no payload) */
	struct decision d;
	bool answer; /* in SMTP, with the replies to verb */
	uint32_t server_seq;
	uint16_t verb[ENFORCE_VERBS_MAX];
	size_t n_verbs;
};

struct gate {
	struct gate_config cfg;
	struct gate_dest *dests;
	struct gate_pending *pending;
	size_t n_pending;
	bool pending_news; /* a pending observation raises what the store knows */
	struct datapath *dp;
	struct store *store;
	struct enforce *enforce;
	struct minisign_pubkey key;
	bool have_key;
	struct policy *policy;
	char policy_sha256[65];
	char policy_sig_sha256[65]; /* of the signature that came with it */
	char last_refusal[POLICY_ERR_MAX];
	struct gate_stats stats;
	struct flow *cur_flow; /* flow whose segment is being consumed */
	/* The commands of the segment being consumed (for the replies to a
	 * withheld one); beyond ENFORCE_VERBS_MAX, seg_verbs_over. */
	uint16_t seg_verbs[ENFORCE_VERBS_MAX];
	size_t n_seg_verbs;
	bool seg_verbs_over;
	bool seg_copied; /* the segment being consumed passed already */
	bool seg_passed; /* ... and the program turned the entry PASS there */
	/* Flows whose content goes to the kernel after this batch. */
	struct tlsgate_flow_key content_pending[GATE_CONTENT_PENDING_MAX];
	size_t n_content_pending;
	struct gate_refusal refusals[GATE_REFUSALS_MAX];
	size_t n_refusals;
	uint64_t ticks;
	struct timespec drop_mtime; /* of the drop directory's policy.json seen last */
	off_t drop_size;
	struct log_ratelimit rl;
};

static void gate_dest_flush(struct gate *g);

static int64_t wall_now(void)
{
	return (int64_t)time(NULL);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- helpers ----------------------------------------------------------- */

static bool gate_is_inside(const struct gate *g, uint32_t ifindex)
{
	for (size_t i = 0; i < g->cfg.n_inside; i++)
		if ((uint32_t)g->cfg.inside_ifindex[i] == ifindex)
			return true;
	return false;
}

/* Address text without port. */
static void addr_text(int af, const uint8_t addr[16], char *buf, size_t len)
{
	if (af == AF_INET)
		inet_ntop(AF_INET, addr + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, addr, buf, (socklen_t)len);
}

static void endpoint_text(const struct flowkey_packet *p, bool src, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	addr_text(p->family, src ? p->saddr : p->daddr, a, sizeof(a));
	snprintf(buf, len, p->family == AF_INET ? "%s:%u" : "[%s]:%u", a,
		 src ? p->sport : p->dport);
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}

static enum decide_level level_from_store(enum store_level l)
{
	switch (l) {
	case STORE_LEVEL_DANE:
		return DECIDE_LEVEL_DANE;
	case STORE_LEVEL_TLS:
		return DECIDE_LEVEL_TLS;
	case STORE_LEVEL_PLAINTEXT:
		return DECIDE_LEVEL_PLAINTEXT;
	default:
		return DECIDE_LEVEL_UNKNOWN;
	}
}

static enum store_level level_to_store(enum decide_level l)
{
	switch (l) {
	case DECIDE_LEVEL_DANE:
		return STORE_LEVEL_DANE;
	case DECIDE_LEVEL_TLS:
		return STORE_LEVEL_TLS;
	case DECIDE_LEVEL_PLAINTEXT:
		return STORE_LEVEL_PLAINTEXT;
	default:
		return STORE_LEVEL_NONE;
	}
}

/* The policy's sender prefixes as LPM keys (IPv4 mapped). */
static size_t gate_prefix_keys(const struct policy *p, struct tlsgate_lpm_key **out)
{
	const struct policy_prefix *list;
	size_t n = p ? policy_sender_prefixes(p, &list) : 0;
	struct tlsgate_lpm_key *keys = xcalloc(n ? n : 1, sizeof(*keys));
	for (size_t i = 0; i < n; i++) {
		if (list[i].family == AF_INET) {
			keys[i].addr[10] = keys[i].addr[11] = 0xff;
			memcpy(keys[i].addr + 12, list[i].addr, 4);
			keys[i].prefixlen = 96u + list[i].len;
		} else {
			memcpy(keys[i].addr, list[i].addr, 16);
			keys[i].prefixlen = list[i].len;
		}
	}
	*out = keys;
	return n;
}

size_t gate_secure_sources(const struct gate *g)
{
	const struct policy_prefix *list;
	return g && g->policy ? policy_sender_prefixes(g->policy, &list) : 0;
}

static uint32_t gate_failclosed_ms(const struct gate *g)
{
	return gate_secure_sources(g) ? g->cfg.failclosed_ms : 0;
}

void gate_stop_failclosed(struct gate *g)
{
	datapath_heartbeat_stopped(g->dp, g->cfg.failclosed_ms);
}

/* ---- policy ------------------------------------------------------------ */

/* Reads a whole policy or signature file. Only a regular file is read: a
 * FIFO, device or directory is refused without blocking (O_NONBLOCK), a
 * symlink is followed to what it names. A file that changes size while it
 * is read is refused (-EIO): a policy applies whole or not at all. On any
 * error *buf is NULL and nothing is left to free. */
static int read_file(const char *path, char **buf, size_t *len, size_t max)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	if ((size_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	char *b = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	for (;;) {
		/* one byte more than fstat said: a file that grew is noticed */
		ssize_t n = read(fd, b + got, (size_t)st.st_size + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || got + (size_t)n > (size_t)st.st_size) {
			if (n > 0)
				got += (size_t)n;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (got != (size_t)st.st_size) {
		free(b);
		return -EIO;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	return 0;
}

/* read_file()'s error in words; too_big: what -EFBIG means here. */
static const char *read_file_error(int rc, const char *too_big)
{
	return rc == -EFBIG  ? too_big
	       : rc == -EINVAL ? "not a regular file"
	       : rc == -EIO    ? "changed while it was read"
			       : strerror(-rc);
}

static int write_file_atomic(const char *dir, const char *name, const char *data, size_t len)
{
	char tmp[512], path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
	close(fd);
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
	wc_Sha256 sha;
	uint8_t d[WC_SHA256_DIGEST_SIZE];
	wc_InitSha256(&sha);
	wc_Sha256Update(&sha, (const byte *)data, (word32)len);
	wc_Sha256Final(&sha, d);
	wc_Sha256Free(&sha);
	for (int i = 0; i < WC_SHA256_DIGEST_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The kernel's secure_domains from policy p (NULL: none): its secure-mode
 * sender and recipient domains and fail_mode.normal, for when the daemon
 * is gone (bpf/tlsgate_shared.h). On failure the map keeps a superset of
 * the old and the new set under the old READY: retried at the next
 * policy. */
static void gate_secure_domains(struct gate *g, const struct policy *p)
{
	const char **names = xcalloc(2 * POLICY_MAX_ENTRIES, sizeof(*names));
	unsigned int *pf = xcalloc(2 * POLICY_MAX_ENTRIES, sizeof(*pf));
	size_t n = policy_secure_domains(p, names, pf, 2 * POLICY_MAX_ENTRIES);
	uint64_t *hashes = xcalloc(n + 1, sizeof(*hashes));
	uint32_t *flags = xcalloc(n + 1, sizeof(*flags));
	for (size_t i = 0; i < n; i++) {
		bool sub = pf[i] & POLICY_SECURE_SUBDOMAINS;
		hashes[i] = flowkey_domain_hash(names[i]);
		if (pf[i] & POLICY_SECURE_SENDER)
			flags[i] = TLSGATE_SD_SENDER | (sub ? TLSGATE_SD_SENDER_SUB : 0);
		else
			flags[i] = TLSGATE_SD_RECIPIENT | (sub ? TLSGATE_SD_RECIPIENT_SUB : 0);
	}
	uint32_t ready = (n ? TLSGATE_SD_DOMAINS : 0) |
			 (p && policy_fail_mode_normal(p) == POLICY_FAIL_CLOSED
				  ? TLSGATE_SD_NORMAL_CLOSED
				  : 0);
	int rc = datapath_set_secure_domains(g->dp, hashes, flags, n, ready, g->cfg.failclosed_ms);
	if (rc < 0)
		log_warnx("cannot write the secure domains to the kernel (%s): while the daemon is "
			  "gone they fail as the previous policy said",
			  strerror(-rc));
	free(flags);
	free(hashes);
	free(pf);
	free(names);
}

/* The kernel's rcpt_domains from policy p (NULL: none, every RCPT TO
 * passes the daemon's judgement). On failure READY stays absent and every
 * RCPT TO is queued: slower, never weaker. Then secure_domains, from the
 * same policy. */
static void gate_rcpt_domains(struct gate *g, const struct policy *p)
{
	const char **names = xcalloc(2 * POLICY_MAX_ENTRIES, sizeof(*names));
	size_t n = policy_refusing_domains(p, names, 2 * POLICY_MAX_ENTRIES);
	uint64_t *hashes = xcalloc(n + 1, sizeof(*hashes));
	for (size_t i = 0; i < n; i++)
		hashes[i] = flowkey_domain_hash(names[i]);
	int rc = datapath_set_rcpt_domains(g->dp, hashes, n);
	if (rc < 0)
		log_warnx("cannot write the recipient domains to the kernel (%s): every RCPT TO "
			  "is queued",
			  strerror(-rc));
	free(hashes);
	free(names);
	gate_secure_domains(g, p);
}

/* Verifies and installs a policy from memory. applied_serial: the serial
 * that must be exceeded. persist: also keep a copy and record it. */
static int gate_install(struct gate *g, const char *name, const char *json, size_t json_len,
			const char *sig, size_t sig_len, uint64_t applied_serial, time_t now,
			bool persist, char *err, size_t errlen)
{
	struct policy *p = NULL;
	int rc = policy_load_mem(name, json, json_len, sig, sig_len, &g->key, applied_serial, now,
				 &p, err, errlen);
	if (rc < 0)
		return rc;
	/* The kernel's secure sources first: if they cannot be written,
	 * put the old ones back and keep the old policy. */
	struct tlsgate_lpm_key *keys;
	size_t n = gate_prefix_keys(p, &keys);
	rc = datapath_set_secure_sources(g->dp, keys, n);
	free(keys);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot write the secure-source prefixes to the kernel: %s",
			 name, strerror(-rc));
		n = gate_prefix_keys(g->policy, &keys);
		datapath_set_secure_sources(g->dp, keys, n);
		free(keys);
		policy_free(p);
		return rc;
	}
	char sha[65];
	sha256_hex(json, json_len, sha);
	if (persist) {
		if (write_file_atomic(g->cfg.state_dir, "policy.json", json, json_len) < 0 ||
		    write_file_atomic(g->cfg.state_dir, "policy.json.minisig", sig, sig_len) < 0)
			log_warn("policy serial %llu applied but not saved in %s: it will not "
				 "survive a restart",
				 (unsigned long long)policy_serial(p), g->cfg.state_dir);
		char keyid[17];
		for (int i = 0; i < 8; i++)
			snprintf(keyid + 2 * i, 3, "%02X", g->key.key_id[7 - i]);
		store_policy_set(g->store, policy_serial(p), sha, keyid, wall_now(),
				 (int64_t)policy_expires(p), json);
		struct store_event ev = { .time = wall_now(), .kind = "policy",
					  .rule = "policy-applied", .verdict = "applied",
					  .reason = name };
		store_event_add(g->store, &ev);
	}
	/* History releases named by the policy. */
	const char *const *hosts;
	size_t nh = policy_history_releases(p, &hosts);
	for (size_t i = 0; i < nh; i++) {
		char by[64];
		snprintf(by, sizeof(by), "policy serial %llu", (unsigned long long)policy_serial(p));
		if (store_history_release(g->store, hosts[i], by, wall_now()) == 0)
			log_info("history lock on %s released by %s", hosts[i], by);
	}
	gate_dest_flush(g); /* history releases may have changed locks */
	/* Copies of RCPT TO lines the kernel cleared under the old policy
	 * may still be unread: judged by the new one, a refusal comes too
	 * late for them (the flow is reset instead). */
	gate_rcpt_domains(g, p);
	policy_free(g->policy);
	g->policy = p;
	memcpy(g->policy_sha256, sha, sizeof(sha));
	sha256_hex(sig, sig_len, g->policy_sig_sha256);
	datapath_heartbeat(g->dp, gate_failclosed_ms(g));
	log_info("policy serial %llu applied (%s, sha256 %.16s..., %zu secure source prefix(es))",
		 (unsigned long long)policy_serial(p), name, sha, n);
	return 0;
}

int gate_policy_apply(struct gate *g, const char *json_path, const char *sig_path, char *err,
		      size_t errlen)
{
	char sigbuf[512];
	char *json = NULL, *sig = NULL;
	size_t json_len, sig_len;
	int rc;

	if (!g->have_key) {
		snprintf(err, errlen, "no policy key configured (--policy-key): policies cannot be verified");
		return -ENOKEY;
	}
	if (!sig_path) {
		snprintf(sigbuf, sizeof(sigbuf), "%s.minisig", json_path);
		sig_path = sigbuf;
	}
	if ((rc = read_file(json_path, &json, &json_len, POLICY_MAX_BYTES)) < 0) {
		snprintf(err, errlen, "%s: %s", json_path,
			 read_file_error(rc, "larger than the policy size limit"));
		goto out;
	}
	if ((rc = read_file(sig_path, &sig, &sig_len, 64 * 1024)) < 0) {
		snprintf(err, errlen, "%s: %s", sig_path,
			 read_file_error(rc, "larger than a signature can be"));
		goto out;
	}
	if (g->policy) {
		/* The very files in force (a restart or SIGHUP with the same
		 * --policy): nothing to apply, and nothing refused. */
		char jsha[65], ssha[65];
		sha256_hex(json, json_len, jsha);
		sha256_hex(sig, sig_len, ssha);
		if (!strcmp(jsha, g->policy_sha256) && !strcmp(ssha, g->policy_sig_sha256)) {
			snprintf(err, errlen, "%s: serial %llu is already in force", json_path,
				 (unsigned long long)policy_serial(g->policy));
			free(json);
			free(sig);
			return -EALREADY;
		}
	}
	uint64_t applied = g->policy ? policy_serial(g->policy) : 0;
	uint64_t stored;
	if (store_policy_serial(g->store, &stored) == 0 && stored > applied)
		applied = stored;
	rc = gate_install(g, json_path, json, json_len, sig, sig_len, applied, time(NULL), true,
			  err, errlen);
out:
	if (rc < 0) {
		g->stats.policy_refused++;
		snprintf(g->last_refusal, sizeof(g->last_refusal), "%s", err);
		struct store_event ev = { .time = wall_now(), .kind = "policy",
					  .rule = "policy-refused", .verdict = "refused",
					  .reason = err };
		store_event_add(g->store, &ev);
		log_warnx("policy refused: %s", err);
	} else {
		g->stats.policy_applied++;
	}
	free(json);
	free(sig);
	return rc;
}

/* At start: the saved copy (may be the same serial as recorded). */
static void gate_load_saved(struct gate *g)
{
	char jpath[512], spath[512], err[POLICY_ERR_MAX];
	char *json = NULL, *sig = NULL;
	size_t jl, sl;
	snprintf(jpath, sizeof(jpath), "%s/policy.json", g->cfg.state_dir);
	snprintf(spath, sizeof(spath), "%s/policy.json.minisig", g->cfg.state_dir);
	if (read_file(jpath, &json, &jl, POLICY_MAX_BYTES) < 0 ||
	    read_file(spath, &sig, &sl, 64 * 1024) < 0)
		goto out;
	uint64_t stored = 0;
	store_policy_serial(g->store, &stored);
	uint64_t floor = stored ? stored - 1 : 0;
	int rc = gate_install(g, jpath, json, jl, sig, sl, floor, time(NULL), false, err,
			      sizeof(err));
	if (rc == -EKEYEXPIRED) {
		/* Better an expired policy than none: secure mode must not
		 * silently switch off at a restart. */
		rc = gate_install(g, jpath, json, jl, sig, sl, floor, 0, false, err, sizeof(err));
		if (rc == 0)
			log_warnx("the saved policy has EXPIRED; it stays in force until a new "
				  "one is applied");
	}
	if (rc < 0)
		log_warnx("saved policy not loaded: %s", err);
out:
	free(json);
	free(sig);
}

void gate_reload(struct gate *g)
{
	char err[POLICY_ERR_MAX];
	if (!g->cfg.policy_path)
		return;
	int rc = gate_policy_apply(g, g->cfg.policy_path, NULL, err, sizeof(err));
	if (rc == -ESTALE)
		log_info("policy %s: not newer than the applied one", g->cfg.policy_path);
	else if (rc == -EALREADY)
		log_info("policy %s", err);
}

/* ---- open / close ------------------------------------------------------ */

struct gate *gate_open(const struct gate_config *cfg, struct datapath *dp)
{
	struct gate *g = xcalloc(1, sizeof(*g));
	char err[POLICY_ERR_MAX];
	g->cfg = *cfg;
	g->dests = xcalloc(GATE_DEST_SLOTS, sizeof(*g->dests));
	g->pending = xcalloc(GATE_PENDING_MAX, sizeof(*g->pending));
	g->dp = dp;
	if (mkdir(cfg->state_dir, 0700) < 0 && errno != EEXIST) {
		log_warn("state directory %s", cfg->state_dir);
		goto fail;
	}
	g->store = store_open(cfg->store_path, false);
	if (!g->store)
		goto fail;
	g->enforce = cfg->enforce ? cfg->enforce : enforce_open();
	if (!g->enforce)
		goto fail;
	if (cfg->policy_key_path) {
		if (minisign_pubkey_load(cfg->policy_key_path, &g->key, err, sizeof(err)) < 0) {
			log_warnx("policy key: %s", err);
			goto fail;
		}
		g->have_key = true;
		gate_load_saved(g);
		uint64_t saved = g->policy ? policy_serial(g->policy) : 0;
		if (cfg->policy_path) {
			uint64_t before = g->stats.policy_refused;
			gate_reload(g);
			/* A key and a policy file mean secure mode is wanted:
			 * never silently without it. */
			if (!g->policy) {
				log_warnx("refusing to start: the policy %s could not be applied (%s) "
					  "and no last good policy is saved; without one, secure-mode "
					  "mail would not be protected",
					  cfg->policy_path, g->last_refusal[0] ? g->last_refusal : "?");
				goto fail;
			}
			if (g->stats.policy_refused > before)
				log_warnx("RUNNING ON THE LAST GOOD POLICY (serial %llu, saved): %s was "
					  "refused: %s",
					  (unsigned long long)saved, cfg->policy_path, g->last_refusal);
		}
	} else {
		log_warnx("no policy key (--policy-key): secure mode is off until a key is "
			  "installed and a signed policy applied");
	}
	/* Pinned prefixes of an earlier run that no policy here confirms
	 * (started without key, or the saved policy did not load). */
	if (!g->policy) {
		datapath_set_secure_sources(dp, NULL, 0);
		gate_rcpt_domains(g, NULL);
	}
	datapath_heartbeat(dp, gate_failclosed_ms(g));
	return g;
fail:
	gate_close(g);
	return NULL;
}

void gate_close(struct gate *g)
{
	if (!g)
		return;
	if (g->store)
		gate_flush(g);
	policy_free(g->policy);
	enforce_close(g->enforce);
	store_close(g->store);
	free(g->dests);
	free(g->pending);
	free(g);
}

/* Applies DIR/policy.json when its mtime or size changed since the last
 * look. Both files are written first and then the JSON is renamed into
 * place by whoever drops a policy; a half-written pair is refused (bad
 * signature) and retried at the next change. */
static void gate_drop_dir(struct gate *g)
{
	char path[512], err[POLICY_ERR_MAX];
	struct stat st;
	snprintf(path, sizeof(path), "%s/policy.json", g->cfg.policy_dir);
	if (stat(path, &st) < 0)
		return;
	if (st.st_mtim.tv_sec == g->drop_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == g->drop_mtime.tv_nsec && st.st_size == g->drop_size)
		return;
	g->drop_mtime = st.st_mtim;
	g->drop_size = st.st_size;
	if (gate_policy_apply(g, path, NULL, err, sizeof(err)) == 0)
		log_info("policy from the drop directory %s applied", g->cfg.policy_dir);
}

void gate_tick(struct gate *g)
{
	int rc = datapath_heartbeat(g->dp, gate_failclosed_ms(g));
	if (rc < 0)
		log_warnx_rl(&g->rl, "heartbeat: %s", strerror(-rc));
	enforce_tick(g->enforce);
	gate_flush(g);
	/* The events table is bounded: the oldest rows go first. */
	if (++g->ticks % 60 == 0)
		store_event_trim(g->store, GATE_EVENTS_MAX);
	if (g->cfg.policy_dir && g->ticks % 5 == 0)
		gate_drop_dir(g);
}

/* ---- per flow ---------------------------------------------------------- */

static int64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static struct gate_dest *gate_dest_slot(struct gate *g, const char *addr)
{
	uint32_t h = 2166136261u;
	for (const char *c = addr; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	return &g->dests[h % GATE_DEST_SLOTS];
}

/* Forgets every cached destination (after a release or a policy). */
static void gate_dest_flush(struct gate *g)
{
	for (size_t i = 0; i < GATE_DEST_SLOTS; i++)
		g->dests[i].addr[0] = '\0';
}

static void gate_dest_load(struct gate *g, struct gate_dest *d, const char *addr)
{
	char mx[STORE_NAME_MAX], verdict[32];
	int64_t now = wall_now(), when;

	/* everything but the RCPT hint memo, which stays with its address */
	if (strcmp(d->addr, addr))
		memset(d, 0, sizeof(*d));
	else
		memset(d, 0, offsetof(struct gate_dest, hint_domain));
	snprintf(d->addr, sizeof(d->addr), "%s", addr);
	d->loaded = mono_s();
	/* The name: a validated mapping, else a name with history (a hint
	 * never replaces it), else the newest; past the DNS TTL the last known
	 * name. Never the bare address when a name was known (issue 18.3). */
	if (store_addr_mx_name(g->store, addr, now, mx, NULL, NULL, NULL) == 0)
		snprintf(d->mx, sizeof(d->mx), "%s", mx);
	else
		snprintf(d->mx, sizeof(d->mx), "%s", addr);
	/* History and locks by name and by address, the strictest wins: the
	 * name's, the bare address's and those of every name the address was
	 * ever mapped to. A new or lost name cannot end a requirement (issue
	 * 18.4; DESIGN.md, threat model rule 4). */
	struct store_history h;
	if (store_history_get_any(g->store, d->mx, addr, &h) == 0) {
		d->history_known = true;
		d->history_level = level_from_store(h.level);
		d->history_version = h.best_version;
		d->history_locked = h.locked;
	}
	/* DANE: what the probe found for this address (its TLSA RRset is used
	 * on the wire up to TLS 1.2, see gate_wire_dane). */
	if (store_probe_addr_latest(g->store, addr, verdict, &when) == 0) {
		d->probe_time = when;
		if (!strcmp(verdict, "dane")) {
			d->dane = DECIDE_DANE_USABLE;
			d->probe = DECIDE_PROBE_VERIFIED;
		} else if (!strcmp(verdict, "dane-fail")) {
			d->dane = DECIDE_DANE_USABLE;
			d->probe = DECIDE_PROBE_FAILED;
		}
	}
}

/* The decision kept for after the segment; a zeroed one (nothing to act
 * on, nothing observed) while none is. */
static const struct decision *gate_pending(const struct gate_flow *gf)
{
	static const struct decision none;
	return gf->pending ? gf->pending : &none;
}

static void gate_keep(struct gate_flow *gf, const struct decision *d)
{
	if (!gf->pending)
		gf->pending = xmalloc(sizeof(*gf->pending));
	if (d != gf->pending)
		*gf->pending = *d;
}

/* A flow's name: a copy of v as long as it is; "" or NULL: none. */
static void gate_name_set(char **name, const char *v)
{
	free(*name);
	*name = v && v[0] ? xstrdup(v) : NULL;
}

static void gate_mx_set(struct gate_flow *gf, const char *v)
{
	free(gf->mx);
	gf->mx = xstrdup(v);
}

void gate_flow_free(struct gate_flow *gf)
{
	if (!gf)
		return;
	free(gf->pending);
	free(gf->mx);
	free(gf->sender_domain);
	free(gf->recipient_domain);
	free(gf);
}

static void gate_learn_destination(struct gate *g, struct gate_flow *gf)
{
	struct gate_dest *d = gate_dest_slot(g, gf->server_text);
	if (strcmp(d->addr, gf->server_text) || mono_s() - d->loaded >= GATE_DEST_FRESH_S)
		gate_dest_load(g, d, gf->server_text);
	int64_t now = wall_now();
	gate_mx_set(gf, d->mx);
	gf->history_known = d->history_known;
	gf->history_level = d->history_level;
	gf->history_version = d->history_version;
	gf->history_locked = d->history_locked;
	gf->dane = d->dane;
	gf->probe = d->probe;
	if (d->probe != DECIDE_PROBE_NONE)
		gf->probe_age_s = now > d->probe_time ? (uint64_t)(now - d->probe_time) : 0;
}

static void gate_on_command(void *arg, int verb, const char *addr);

/* DANE from the first message (issue 18, RFC 7672 2.1): the TLS handshake
 * to an MX may be judged only with its DANE state known - a probe of this
 * address within the policy's dane_probe_max_age. An MX known by address
 * alone has no name to look TLSA up for: nothing to wait for. */
static bool gate_dane_known(struct gate *g, struct flow *f)
{
	struct gate_flow *gf = f->gate;
	if (!strcmp(gf->mx, gf->server_text))
		return true;
	struct gate_dest *d = gate_dest_slot(g, gf->server_text);
	int64_t oldest = wall_now() - (int64_t)policy_dane_probe_max_age(g->policy);
	if (gf->dane_wait && gf->dane_wait_from > oldest)
		oldest = gf->dane_wait_from; /* a probe started for this wait */
	/* the cached row first: a known MX costs no store read */
	if (!strcmp(d->addr, gf->server_text) && d->probe_time > 0 && d->probe_time >= oldest)
		return true;
	gate_dest_load(g, d, gf->server_text);
	return d->probe_time > 0 && d->probe_time >= oldest;
}

/* Withholds the client's STARTTLS (it sends it again) and probes the MX
 * host itself (a name without MX records of its own: the probe takes it
 * as its own MX, looks its addresses and _25._tcp TLSA up and records the
 * verdict for each address): the DANE state of exactly this MX. */
static void gate_dane_wait_start(struct gate *g, struct flow *f)
{
	struct gate_flow *gf = f->gate;
	const char *target = gf->mx;
	if (g->cfg.schedule_probe && g->cfg.schedule_probe(g->cfg.probe_arg, target) < 0)
		log_warnx_rl(&g->rl, "could not schedule a DANE probe of %s", target);
	gf->dane_wait = true;
	gf->dane_wait_from = wall_now();
	gf->dane_wait_until_ns = mono_ns() + GATE_DANE_WAIT_S * 1000000000ull;
	g->stats.dane_waits++;
	log_info("STARTTLS to %s [%s] withheld until its DANE state is known (probe of %s)",
		 gf->mx, gf->server_text, target);
}

/* The sending MTA chose this server for this domain: a hint (never
 * validated) that ties the recipient domain to the MX, for the recipient
 * lookup. Written again only when the domain changes or half its TTL has
 * passed, so that mail to a busy destination writes no row per flow. */
static void gate_hint_rcpt_domain(struct gate *g, struct gate_flow *gf, const char *domain)
{
	struct gate_dest *d = gate_dest_slot(g, gf->server_text);
	bool cached = !strcmp(d->addr, gf->server_text);
	int64_t now = wall_now();
	if (cached && now < d->hint_until && !strcmp(d->hint_domain, domain))
		return;
	if (store_addr_mx_set(g->store, gf->server_text, gf->mx, domain, false,
			      now + GATE_RCPT_HINT_TTL) < 0 || !cached)
		return;
	snprintf(d->hint_domain, sizeof(d->hint_domain), "%s", domain);
	d->hint_until = now + GATE_RCPT_HINT_TTL / 2;
}

void gate_flow_start(struct gate *g, struct flow *f, const struct flowkey_packet *p,
		     uint32_t indev)
{
	struct gate_flow *gf = xcalloc(1, sizeof(*gf));
	bool to_server = p->dir == TLSGATE_DIR_TO_SERVER;
	/* The client side is where the first client packet came from. */
	bool client_inside = gate_is_inside(g, indev) == to_server;
	gf->direction = client_inside ? DECIDE_OUTBOUND : DECIDE_INBOUND;
	gf->af = p->family;
	memcpy(gf->server_addr, to_server ? p->daddr : p->saddr, 16);
	addr_text(p->family, gf->server_addr, gf->server_text, sizeof(gf->server_text));
	const uint8_t *client = to_server ? p->saddr : p->daddr;
	bool secure_src = p->family == AF_INET
				  ? policy_sender_address_secure(g->policy, AF_INET, client + 12)
				  : policy_sender_address_secure(g->policy, AF_INET6, client);
	gf->sender = secure_src ? DECIDE_SENDER_SECURE_SOURCE : DECIDE_SENDER_NORMAL;
	if (gf->direction == DECIDE_OUTBOUND)
		gate_learn_destination(g, gf);
	else
		gate_mx_set(gf, gf->server_text);
	f->gate = gf;
	session_set_command_cb(f->session, gate_on_command, g);
}

static struct decide_input gate_input(struct gate *g, struct flow *f, enum decide_phase phase)
{
	struct gate_flow *gf = f->gate;
	const struct session_info *si = session_info(f->session);
	struct decide_input in = {
		.direction = gf->direction,
		.sender = gf->sender,
		.recipient_secure = gf->recipient_secure,
		.sender_domain = gf->sender_domain,
		.recipient_domain = gf->recipient_domain,
		/* An address literal is not a host name: decide() shows the
		 * address itself. */
		.mx_name = strcmp(gf->mx, gf->server_text) ? gf->mx : NULL,
		.af = gf->af,
		.dane = gf->dane,
		.history_level = gf->history_level,
		.history_version = gf->history_version,
		.history_locked = gf->history_locked,
		.policy = g->policy,
		.phase = phase,
		.starttls_offered = si->starttls_offered,
		.starttls_issued = si->starttls_issued,
		.starttls_reply = si->starttls_reply,
		.tls_version = si->tls_version,
		.tls_cipher = si->tls_cipher,
		.cert = DECIDE_CERT_UNSEEN,
		.probe = gf->probe,
		.probe_age_s = gf->probe_age_s,
	};
	if (gf->af == AF_INET)
		memcpy(in.addr, gf->server_addr + 12, 4);
	else
		memcpy(in.addr, gf->server_addr, 16);
	if (gf->direction == DECIDE_OUTBOUND && gf->recipient_domain)
		policy_domain_override(g->policy, gf->recipient_domain, &in.override);
	return in;
}

/* Called by the session for each client command of the current segment. */
static void gate_on_command(void *arg, int verb, const char *addr)
{
	struct gate *g = arg;
	struct flow *f = g->cur_flow;
	if (g->n_seg_verbs < ENFORCE_VERBS_MAX)
		g->seg_verbs[g->n_seg_verbs++] = (uint16_t)verb;
	else
		g->seg_verbs_over = true;
	if (verb == SMTP_VERB_BDAT && f && f->gate)
		f->gate->chunking = true;
	if (!f || !f->gate || f->gate->block_pending || f->gate->decided)
		return;
	struct gate_flow *gf = f->gate;
	const char *dom = domain_of(addr);
	enum decide_phase phase;
	char norm[STORE_NAME_MAX];

	switch (verb) {
	case SMTP_VERB_MAIL:
		phase = DECIDE_PHASE_MAIL;
		gate_name_set(&gf->sender_domain, NULL);
		gf->recipient_secure = false;
		if (dom && policy_domain_normalize(dom, norm, sizeof(norm)) == 0) {
			gate_name_set(&gf->sender_domain, norm);
			if (gf->sender != DECIDE_SENDER_SECURE_SOURCE &&
			    policy_sender_domain_secure(g->policy, norm))
				gf->sender = DECIDE_SENDER_SECURE_DOMAIN;
			else if (gf->sender == DECIDE_SENDER_SECURE_DOMAIN)
				gf->sender = DECIDE_SENDER_NORMAL; /* a new transaction */
		}
		break;
	case SMTP_VERB_RCPT:
		phase = DECIDE_PHASE_RCPT;
		if (dom && policy_domain_normalize(dom, norm, sizeof(norm)) == 0) {
			bool new_domain =
				strcmp(gf->recipient_domain ? gf->recipient_domain : "", norm) != 0;
			gate_name_set(&gf->recipient_domain, norm);
			if (gf->direction == DECIDE_INBOUND &&
			    policy_recipient_domain_secure(g->policy, norm))
				gf->recipient_secure = true;
			if (gf->direction == DECIDE_OUTBOUND && new_domain)
				gate_hint_rcpt_domain(g, gf, norm);
		}
		break;
	case SMTP_VERB_DATA:
	case SMTP_VERB_BDAT:
		phase = DECIDE_PHASE_DATA;
		break;
	case SMTP_VERB_STARTTLS:
		phase = DECIDE_PHASE_CONNECT;
		break;
	case SMTP_VERB_QUIT:
		/* Nothing after QUIT can matter: offload what is left (the
		 * 221 and the closing handshake). */
		gf->decided = true;
		return;
	default:
		return;
	}
	struct decide_input in = gate_input(g, f, phase);
	struct decision d = decide(&in);
	if (verb == SMTP_VERB_STARTTLS) {
		/* only what is known before anything is said blocks here */
		if (d.action == DECIDE_BLOCK_TEMP || d.action == DECIDE_BLOCK_PERM) {
			gf->starttls_refuse = true;
			gate_keep(gf, &d);
		} else if (gf->direction == DECIDE_OUTBOUND && !gate_dane_known(g, f)) {
			gate_dane_wait_start(g, f);
		}
		return;
	}
	if (d.action == DECIDE_BLOCK_TEMP || d.action == DECIDE_BLOCK_PERM) {
		gf->block_pending = true;
		gate_keep(gf, &d);
	} else if (d.action == DECIDE_PASS) {
		gate_keep(gf, &d); /* acted upon after the segment */
		gf->decided = true;
	} else if (d.observed > DECIDE_LEVEL_UNKNOWN) {
		gate_keep(gf, &d); /* history is recorded once */
	}
}

/* One log line and one event row. */
static void gate_event(struct gate *g, struct flow *f, const struct flowkey_packet *p,
		       const char *kind, const struct decision *d)
{
	struct gate_flow *gf = f->gate;
	char client[64], server[64];
	bool client_is_src = p->dir == TLSGATE_DIR_TO_SERVER;
	endpoint_text(p, client_is_src, client, sizeof(client));
	endpoint_text(p, !client_is_src, server, sizeof(server));
	const char *verdict = d ? decide_action_name(d->action) : "pass";
	const char *rule = d ? decide_rule_name(d->rule) : "none";
	const char *reason = d ? decide_reason_name(d->reason) : "first-seen";
	struct store_event ev = {
		.time = wall_now(), .kind = kind, .client = client, .server = server,
		.mx = gf->mx, .sender = gf->sender_domain,
		.recipient = gf->recipient_domain,
		.rule = d ? rule : "first-seen", .verdict = verdict,
		.reason = d ? d->text : "first connection to this destination",
	};
	store_event_add(g->store, &ev);
	log_info("%s: client=%s server=%s mx=%s direction=%s sender=%s recipient=%s rule=%s "
		 "reason=%s verdict=%s text=\"%s\"",
		 kind, client, server, gf->mx,
		 gf->direction == DECIDE_OUTBOUND ? "outbound" : "inbound",
		 gf->sender_domain ? gf->sender_domain : "-",
		 gf->recipient_domain ? gf->recipient_domain : "-", rule, reason, verdict,
		 d ? d->text : "");
}

void gate_flush(struct gate *g)
{
	if (g->n_pending == 0)
		return;
	/* without a common transaction each write is its own, retried and
	 * reported by the store */
	bool together = store_begin(g->store) == 0;
	for (size_t i = 0; i < g->n_pending; i++)
		store_history_record(g->store, g->pending[i].mx, g->pending[i].level,
				     g->pending[i].version, g->pending[i].cipher, g->pending[i].time);
	/* A failed commit rolled the batch back: it is kept for the next
	 * flush (TLS history is what "once TLS, always TLS" rests on). */
	if (together && store_commit(g->store) < 0) {
		log_warnx_rl(&g->rl, "TLS history: %zu observations kept for the next write",
			     g->n_pending);
		return;
	}
	g->n_pending = 0;
	g->pending_news = false;
}

void gate_flush_news(struct gate *g)
{
	if (g->pending_news)
		gate_flush(g);
}

/* Records what this flow reached in the TLS history (outbound only):
 * queued, written by gate_flush() in one transaction per batch. */
static void gate_record(struct gate *g, struct flow *f, const struct flowkey_packet *p,
			const struct decision *d)
{
	struct gate_flow *gf = f->gate;
	if (gf->recorded || gf->direction != DECIDE_OUTBOUND || d->observed == DECIDE_LEVEL_UNKNOWN)
		return;
	/* Never let a blocked downgrade lower or pollute the history. */
	if (d->action == DECIDE_BLOCK_TEMP || d->action == DECIDE_BLOCK_PERM)
		return;
	const struct session_info *si = session_info(f->session);
	gf->recorded = true;
	if (g->n_pending == GATE_PENDING_MAX)
		gate_flush(g);
	if (g->n_pending == GATE_PENDING_MAX) {
		/* the store refuses writes: the oldest observation goes */
		log_warnx_rl(&g->rl, "TLS history: the store refuses writes; an observation of %s "
				     "is lost", g->pending[0].mx);
		memmove(g->pending, g->pending + 1, (GATE_PENDING_MAX - 1) * sizeof(g->pending[0]));
		g->n_pending--;
	}
	struct gate_pending *pe = &g->pending[g->n_pending++];
	snprintf(pe->mx, sizeof(pe->mx), "%s", gf->mx);
	pe->level = level_to_store(d->observed);
	pe->version = si->tls_version;
	pe->cipher = si->tls_cipher;
	pe->time = wall_now();
	/* Later flows to this address see the destination as known. */
	struct gate_dest *dc = gate_dest_slot(g, gf->server_text);
	bool cached = !strcmp(dc->addr, gf->server_text);
	/* A first sighting, a higher level or version must not wait for the
	 * next second (a crash would lose what "once TLS, always TLS" needs);
	 * the same again only moves counts and last_seen. */
	if (!gf->history_known || !cached || !dc->history_known ||
	    d->observed > dc->history_level || si->tls_version > dc->history_version)
		g->pending_news = true;
	if (cached) {
		dc->history_known = true;
		if (d->observed > dc->history_level)
			dc->history_level = d->observed;
		if (si->tls_version > dc->history_version)
			dc->history_version = si->tls_version;
	}
	if (!gf->history_known) {
		g->stats.first_seen++;
		gate_event(g, f, p, "first-seen", NULL);
	}
}

static void gate_offload(struct gate *g, struct flow *f, bool no_offload)
{
	if (no_offload)
		return;
	/* The program turned the entry PASS at this segment itself. */
	int err = g->seg_passed ? 0 : datapath_set_verdict(g->dp, &f->key, TLSGATE_PASS);
	if (err < 0) {
		log_warnx_rl(&g->rl, "cannot offload a flow: %s (it stays inspected)",
			     strerror(-err));
		return;
	}
	const struct session_info *si = session_info(f->session);
	f->tls_version = si->tls_version;
	f->tls_cipher = si->tls_cipher;
	f->verdict = TLSGATE_PASS;
	session_free(f->session);
	f->session = NULL;
	free(f->gate->pending); /* acted upon: the kernel has the flow */
	f->gate->pending = NULL;
}

/* Injects the refusal for the withheld client segment p (its commands
 * v; server_seq: where the server still expects the client), or resets
 * both sides when there is no SMTP answer to give. */
static void gate_refuse(struct gate *g, const struct flowkey_packet *p, const struct decision *d,
			const struct enforce_verbs *v, uint32_t server_seq)
{
	int rc = -EMSGSIZE;
	if (d->reply_in_smtp && p->dir == TLSGATE_DIR_TO_SERVER && v) {
		char line[DECIDE_REPLY_MAX];
		snprintf(line, sizeof(line), "%s", d->smtp_reply);
		line[strcspn(line, "\r\n")] = '\0';
		rc = enforce_refuse_at(g->enforce, p, v, line, server_seq);
		if (rc == 0)
			g->stats.refusals_injected++;
		else
			log_warnx_rl(&g->rl, "answering the refused segment failed: %s; resetting",
				     strerror(-rc));
	}
	if (rc < 0) {
		/* No SMTP answer (after TLS began, from the server side, or
		 * it could not be sent): resets; the client defers. */
		rc = enforce_reset(g->enforce, p);
		if (rc == 0)
			g->stats.resets_injected++;
	}
	if (rc < 0) {
		g->stats.inject_errors++;
		log_warnx_rl(&g->rl, "injecting the refusal failed: %s", strerror(-rc));
	}
}

/* gate_refuse() once this batch's verdicts have left (gate_content_flush).
 * A segment of the flow accepted earlier in the batch (the start of the
 * refused line) reaches the server only with its verdict: a reset sent
 * ahead of it is not at the server's next sequence number, so the server
 * ignores it (RFC 5961) and waits for the rest of the line until its own
 * timeout (issue 17, finding 12). With GATE_REFUSALS_MAX waiting, at once. */
static void gate_refuse_after_batch(struct gate *g, const struct flowkey_packet *p,
				    const struct decision *d, const struct enforce_verbs *v,
				    uint32_t server_seq)
{
	if (g->n_refusals == GATE_REFUSALS_MAX) {
		gate_refuse(g, p, d, v, server_seq);
		return;
	}
	struct gate_refusal *r = &g->refusals[g->n_refusals++];
	r->p = *p;
	r->p.payload = NULL;
	r->d = *d;
	r->answer = v != NULL;
	r->server_seq = server_seq;
	r->n_verbs = v ? v->n : 0;
	if (v)
		memcpy(r->verb, v->verb, v->n * sizeof(r->verb[0]));
}

/* The flow's end after a refusal: dropped in the kernel from now on. */
static void gate_block_flow(struct gate *g, struct flow *f)
{
	datapath_set_verdict(g->dp, &f->key, TLSGATE_BLOCK);
	f->verdict = TLSGATE_BLOCK;
	session_free(f->session);
	f->session = NULL;
	f->gate->decided = true;
}

/* Where replies injected to the client start: after all of the server's
 * stream the gateway has passed (at least at_least). The withheld segment
 * may acknowledge less: the client sent it before the server's last
 * replies reached it. Injected at its ack, the refusal would overlap
 * those replies: the client keeps the bytes it got first and reads a cut
 * line, or the refusal in the place of a reply. */
static uint32_t gate_server_next(const struct flow *f, uint32_t at_least)
{
	uint32_t next;
	if (f->session && session_server_next(f->session, &next) &&
	    (int32_t)(next - at_least) > 0)
		return next;
	return at_least;
}

/* The sequence number after segment p (its data, SYN and FIN). */
static uint32_t gate_seq_after(const struct flowkey_packet *p)
{
	return p->seq + (uint32_t)p->payload_len +
	       ((p->flags & (SESSION_TCP_SYN | SESSION_TCP_FIN)) ? 1 : 0);
}

/* Acts on a block: SMTP refusal or resets, kernel BLOCK, lock, event.
 * When the server still owes replies to commands forwarded before the
 * withheld segment (pipelining), the refusal waits for them: injected at
 * once, it would take their place in the client's stream. */
static int gate_block(struct gate *g, struct flow *f, const struct flowkey_packet *p,
		      const struct decision *d)
{
	struct gate_flow *gf = f->gate;
	struct enforce_verbs v = { g->seg_verbs, g->n_seg_verbs };
	unsigned int owed = f->session ? session_replies_owed(f->session) : 0;
	bool answer = d->reply_in_smtp && p->dir == TLSGATE_DIR_TO_SERVER && !g->seg_verbs_over &&
		      !g->seg_copied;
	if (answer && !gf->starttls_withheld && owed > g->n_seg_verbs &&
	    owed <= GATE_DEFERRED_VERBS) {
		gf->refusal_deferred = true;
		gf->deferred_ns = mono_ns();
		gf->deferred_left = (unsigned int)g->n_seg_verbs;
		gf->deferred = *p;
		gf->deferred.payload = NULL;
		memcpy(gf->deferred_verbs, g->seg_verbs, g->n_seg_verbs * sizeof(g->seg_verbs[0]));
		gf->n_deferred_verbs = g->n_seg_verbs;
		gate_keep(gf, d);
	} else {
		struct flowkey_packet q = *p;
		if (answer && !gf->starttls_withheld)
			q.ack = gate_server_next(f, p->ack);
		/* p passed already (a copy): its receiver expects the byte after
		 * it, and takes a reset only there (RFC 5961); later segments
		 * may have passed too (gate_blocked_packet). */
		if (g->seg_copied) {
			q.seq = gate_seq_after(p);
			gf->reset_again = true;
		}
		gate_refuse_after_batch(g, &q, d, answer ? &v : NULL,
					gf->starttls_withheld ? gf->server_seq : p->seq);
		gate_block_flow(g, f);
	}
	if (d->action == DECIDE_BLOCK_PERM)
		g->stats.blocked_perm++;
	else
		g->stats.blocked_temp++;
	if (d->reason < 32)
		g->stats.by_reason[d->reason]++;
	if (d->lock_destination && gf->direction == DECIDE_OUTBOUND) {
		gate_flush(g);
		store_history_lock(g->store, gf->mx, d->text, wall_now());
		struct gate_dest *dc = gate_dest_slot(g, gf->server_text);
		if (!strcmp(dc->addr, gf->server_text))
			dc->history_locked = true;
		g->stats.locks++;
	}
	gate_event(g, f, p, "block", d);
	return NF_DROP;
}

static void gate_deferred_refuse_now(struct gate *g, struct flow *f, uint32_t server_next);

/* A server segment p of a flow whose refusal waits: once the server has
 * given the replies it owed, the refusal follows them. */
static void gate_deferred_refusal(struct gate *g, struct flow *f, const struct flowkey_packet *p)
{
	if (p->dir != TLSGATE_DIR_TO_CLIENT ||
	    session_replies_owed(f->session) > f->gate->deferred_left)
		return;
	gate_deferred_refuse_now(g, f, gate_server_next(f, p->seq + (uint32_t)p->payload_len));
}

void gate_deferred_timeout(struct gate *g, struct flow *f, uint64_t now_ns)
{
	uint32_t server_next;
	if (!f->gate || !f->gate->refusal_deferred || !f->session ||
	    now_ns - f->gate->deferred_ns < GATE_DEFERRED_MAX_NS)
		return;
	log_warnx_rl(&g->rl, "the server did not give the replies it owed within %llu s: refusing now",
		     GATE_DEFERRED_MAX_NS / 1000000000ull);
	if (!session_server_next(f->session, &server_next))
		server_next = f->gate->deferred.ack;
	/* The replies the server never gave are owed too: 451 each, ahead
	 * of the withheld segment's. */
	struct gate_flow *gf = f->gate;
	unsigned int owed = session_replies_owed(f->session), extra = 0;
	if (owed > gf->deferred_left)
		extra = owed - gf->deferred_left;
	if (extra > GATE_DEFERRED_VERBS - gf->n_deferred_verbs)
		extra = (unsigned int)(GATE_DEFERRED_VERBS - gf->n_deferred_verbs);
	memmove(gf->deferred_verbs + extra, gf->deferred_verbs,
		gf->n_deferred_verbs * sizeof(gf->deferred_verbs[0]));
	for (unsigned int i = 0; i < extra; i++)
		gf->deferred_verbs[i] = SMTP_VERB_END_OF_DATA;
	gf->n_deferred_verbs += extra;
	gate_deferred_refuse_now(g, f, server_next);
}

/* The waiting refusal, at server sequence number server_next. */
static void gate_deferred_refuse_now(struct gate *g, struct flow *f, uint32_t server_next)
{
	struct gate_flow *gf = f->gate;
	struct flowkey_packet q = gf->deferred;
	q.ack = server_next; /* after the server's last reply */
	struct enforce_verbs v = { gf->deferred_verbs, gf->n_deferred_verbs };
	gf->refusal_deferred = false;
	gate_refuse(g, &q, gate_pending(gf), &v, q.seq);
	gate_block_flow(g, f);
}

void gate_blocked_packet(struct gate *g, struct flow *f, const struct flowkey_packet *p,
			 bool copied)
{
	struct gate_flow *gf = f->gate;
	if (!gf || !gf->reset_again || (p->flags & SESSION_TCP_RST))
		return;
	struct flowkey_packet q = *p;
	if (copied)
		q.seq = gate_seq_after(p);
	else
		gf->reset_again = false; /* dropped here: its numbers are the last */
	if (enforce_reset(g->enforce, &q) == 0)
		g->stats.resets_injected++;
	else
		g->stats.inject_errors++;
}

bool gate_chunking(const struct flow *f)
{
	return f->gate && f->gate->chunking;
}

bool gate_refusal_waits(const struct flow *f)
{
	return f->gate && f->gate->refusal_deferred;
}

bool gate_withholds(const struct flow *f, const struct flowkey_packet *p)
{
	return f->gate && f->gate->refusal_deferred && p->dir == TLSGATE_DIR_TO_SERVER;
}

/* The client's STARTTLS towards a destination refused before anything is
 * said: withheld, answered "454 4.7.x <the refusal>" (RFC 3207 "TLS not
 * available due to temporary reason"). A client that requires TLS gives
 * up there with this text; one that does not goes on in plaintext and
 * gets the refusal in reply to MAIL FROM. Nothing reaches the server. */
static int gate_refuse_starttls(struct gate *g, struct flow *f, const struct flowkey_packet *p)
{
	struct gate_flow *gf = f->gate;
	char line[DECIDE_REPLY_MAX];

	gf->starttls_refuse = false;
	if (p->dir != TLSGATE_DIR_TO_SERVER)
		return gate_block(g, f, p, gate_pending(gf));
	snprintf(line, sizeof(line), "%s", gate_pending(gf)->smtp_reply);
	line[strcspn(line, "\r\n")] = '\0';
	if (strlen(line) > 4 && line[0] == '4')
		memcpy(line, "454", 3);
	struct enforce_verbs v = { g->seg_verbs, g->n_seg_verbs };
	int rc = enforce_answer(g->enforce, p, &v, line);
	if (rc < 0) {
		g->stats.inject_errors++;
		log_warnx_rl(&g->rl, "answering STARTTLS failed: %s", strerror(-rc));
		return gate_block(g, f, p, gate_pending(gf));
	}
	gf->starttls_withheld = true;
	gf->server_seq = p->seq;
	return NF_DROP;
}

/* DANE on the wire (TLS <= 1.2, full handshake: the certificate chain is
 * visible): the server's chain against the MX's validated TLSA RRset that
 * the probe stored. UNSEEN when there is nothing to check (TLS 1.3,
 * resumption, no TLSA known): decide() then relies on the probe. */
static enum decide_cert gate_wire_dane(struct gate *g, struct flow *f)
{
	struct gate_flow *gf = f->gate;
	const struct session_info *si = session_info(f->session);
	if (gf->direction != DECIDE_OUTBOUND || !si->tls_version || si->tls_version > 0x0303 ||
	    si->tls_resumed || !strcmp(gf->mx, gf->server_text)) {
		log_debug("dane on the wire: not applicable (mx=%s version=0x%04x resumed=%d certs=%u)",
			  gf->mx, si->tls_version, si->tls_resumed, si->cert_count);
		return DECIDE_CERT_UNSEEN;
	}
	static struct store_tlsa recs[STORE_TLSA_MAX]; /* single-threaded */
	int n = store_tlsa_get(g->store, gf->mx, wall_now(), recs, STORE_TLSA_MAX);
	/* DANE does not lapse with the TTL (DESIGN.md threat model, rule 4):
	 * while the probe's newest verdict says DANE, the last validated
	 * RRset stays in force until a validated answer replaces it. */
	if (n <= 0 && gf->dane == DECIDE_DANE_USABLE)
		n = store_tlsa_get(g->store, gf->mx, INT64_MIN, recs, STORE_TLSA_MAX);
	if (n <= 0) {
		log_debug("dane on the wire: no validated TLSA known for %s", gf->mx);
		return DECIDE_CERT_UNSEEN;
	}
	if (si->cert_count == 0) {
		/* A full TLS <= 1.2 handshake without a certificate is an
		 * anonymous cipher suite: nothing authenticates the server
		 * (RFC 7672 2.2: DANE clients must not accept that). */
		log_debug("dane on the wire: mx=%s sent no certificate (anonymous cipher)", gf->mx);
		return DECIDE_CERT_MISMATCH;
	}
	struct dane_tlsa tlsa[STORE_TLSA_MAX];
	for (int i = 0; i < n; i++)
		tlsa[i] = (struct dane_tlsa){ .usage = recs[i].usage, .selector = recs[i].selector,
					      .mtype = recs[i].mtype, .data = recs[i].data,
					      .len = recs[i].len };
	const uint8_t *chain[16];
	size_t chain_len[16];
	size_t nc = 0;
	for (unsigned int i = 0; i < si->cert_count && nc < 16; i++) {
		size_t len;
		const uint8_t *der = session_cert_der(f->session, i, &len);
		if (!der)
			break;
		chain[nc] = der;
		chain_len[nc++] = len;
	}
	const char *names[] = { gf->mx };
	struct dane_input di = { .tlsa = tlsa, .n_tlsa = (size_t)n, .chain = chain,
				 .chain_len = chain_len, .n_chain = nc, .names = names,
				 .n_names = 1, .no_name_checks = true };
	struct dane_verdict v;
	if (dane_verify(&di, &v) < 0)
		return DECIDE_CERT_MISMATCH;
	log_debug("dane on the wire: mx=%s result=%s depth=%d", gf->mx, dane_result_str(v.result),
		  v.depth);
	switch (v.result) {
	case DANE_MATCH:
		return DECIDE_CERT_MATCH;
	case DANE_NO_RECORDS:
	case DANE_UNUSABLE:
		return DECIDE_CERT_UNSEEN;
	default:
		return DECIDE_CERT_MISMATCH;
	}
}

/* Hands the message content to the kernel when the session is inside
 * DATA content or a BDAT chunk: most segments then pass there, and the one
 * that may end the data (a '.' alone between line ends, or what follows
 * the chunk) comes back with all after it.
 * That keeps the next MAIL FROM in view, so secure-mode senders are still
 * judged, without the content crossing NFQUEUE. */
static void gate_content_handover(struct gate *g, struct flow *f)
{
	uint32_t seq, end;
	bool line_end = false, chunk = false;

	if (f->content || f->verdict != TLSGATE_INSPECT || !f->session)
		return;
	if (!session_content_ready(f->session, &seq, &line_end)) {
		if (!session_chunk_ready(f->session, &seq, &end))
			return;
		chunk = true;
	}
	int err = datapath_set_content(g->dp, &f->key, seq, line_end, chunk ? &end : NULL,
				       f->copy);
	f->entry_written_ns = mono_ns();
	if (err < 0) {
		log_warnx_rl(&g->rl, "cannot hand message content to the kernel: %s",
			     strerror(-err));
		return;
	}
	f->content = true;
	f->content_from = seq;
	g->stats.content_handovers++;
}

/* Content is handed over after the batch of queued packets: segments of the
 * flow still in the batch would otherwise reach the program out of order
 * and bring it straight back. */
static void gate_content_want(struct gate *g, struct flow *f, bool no_offload)
{
	uint32_t seq, end;
	bool line_end;

	if (no_offload || f->content || f->content_wanted || f->verdict != TLSGATE_INSPECT ||
	    !f->session || (!session_content_ready(f->session, &seq, &line_end) &&
			    !session_chunk_ready(f->session, &seq, &end)))
		return;
	if (g->n_content_pending == GATE_CONTENT_PENDING_MAX) {
		gate_content_handover(g, f);
		return;
	}
	f->content_wanted = true;
	g->content_pending[g->n_content_pending++] = f->key;
}

void gate_content_flush(struct gate *g, struct flow_table *flows)
{
	for (size_t i = 0; i < g->n_refusals; i++) {
		struct gate_refusal *r = &g->refusals[i];
		struct enforce_verbs v = { r->verb, r->n_verbs };
		gate_refuse(g, &r->p, &r->d, r->answer ? &v : NULL, r->server_seq);
	}
	g->n_refusals = 0;
	for (size_t i = 0; i < g->n_content_pending; i++) {
		struct flow *f = flow_lookup(flows, &g->content_pending[i]);
		if (!f || !f->content_wanted)
			continue;
		f->content_wanted = false;
		gate_content_handover(g, f);
	}
	g->n_content_pending = 0;
}

/* The content is back from the kernel: the session skips to seq (lf: the
 * byte before it is an LF); ended: the end of data passed there too
 * (COPY_END_OF_DATA), so the server owes its reply. */
static void gate_content_back(struct gate *g, struct flow *f, uint32_t seq, bool lf, bool ended)
{
	f->content = false;
	g->stats.content_returns++;
	session_content_skip(f->session, seq, lf);
	if (ended)
		session_content_ended(f->session);
}

/* A queued packet of a flow whose content the kernel held: the program
 * turned the entry back to INSPECT, and the session skips the client bytes
 * that passed in the kernel. A packet queued before the handover took
 * effect finds the entry still CONTENT: it is inspected as it is, and the
 * entry left alone (the program changes it by compare-and-swap only; a
 * write from here could replace it under a segment being passed). */
static void gate_content_return(struct gate *g, struct flow *f, const struct flowkey_packet *p)
{
	struct tlsgate_flow_value v;

	if (datapath_lookup(g->dp, &f->key, &v) < 0) {
		/* Evicted from the LRU map: how far the content went is lost.
		 * Every segment is queued since, so the client's next one
		 * starts where the kernel stopped. */
		if (p->dir == TLSGATE_DIR_TO_SERVER)
			gate_content_back(g, f, p->seq, true, false);
		return;
	}
	if (v.verdict != TLSGATE_CONTENT)
		gate_content_back(g, f, v.content_seq, v.content_lf & TLSGATE_CONTENT_LF,
				  v.content_lf & TLSGATE_CONTENT_ENDED);
}

/* Why the session can no longer follow the dialog as both endpoints read
 * it (DESIGN.md threat model, rules 1 and 3), or PENDING. Sticky anomalies
 * first: they make any later verdict doubtful, even a judged TLS
 * handshake (bytes injected around STARTTLS reach the server outside
 * TLS). "Not SMTP" and a failed handshake count only while the session
 * has not gone back to a dialog it follows. */
static enum decide_reason gate_blind(const struct session_info *si, enum session_action action)
{
	unsigned int a = si->anomalies;

	if (a & SESSION_ANOM_OVERLAP_CONFLICT)
		return DECIDE_REASON_OVERLAP_CONFLICT;
	if (a & (SESSION_ANOM_STARTTLS_INJECTION | SESSION_ANOM_SERVER_EARLY))
		return DECIDE_REASON_INJECTION;
	if (a & SESSION_ANOM_URGENT_DATA)
		return DECIDE_REASON_URGENT_DATA;
	if (a & SESSION_ANOM_UNSEEN_DATA)
		return DECIDE_REASON_UNSEEN_DATA;
	if (a & SESSION_ANOM_AMBIGUOUS_END_OF_DATA)
		return DECIDE_REASON_AMBIGUOUS_DATA_END;
	if ((a & SESSION_ANOM_REASM_LOST) || action == SESSION_LIMIT)
		return DECIDE_REASON_LIMIT;
	/* Picked up without its start (expired, a daemon restart): a MAIL
	 * FROM before the pick-up, or a line cut by it, is unseen, and so is
	 * whatever has lower sequence numbers than the first byte seen (the
	 * session takes it for old data). Only a pick-up inside TLS is safe. */
	if ((a & SESSION_ANOM_MIDSTREAM) && si->phase != SESSION_PHASE_TLS_HANDSHAKE &&
	    si->phase != SESSION_PHASE_TLS)
		return DECIDE_REASON_MIDSTREAM;
	if (si->phase == SESSION_PHASE_NOT_SMTP && !(si->tls_judged && !si->tls_failed))
		return DECIDE_REASON_NOT_SMTP;
	if (si->tls_failed && si->phase != SESSION_PHASE_SMTP)
		return DECIDE_REASON_TLS_FAILED;
	return DECIDE_REASON_PENDING;
}

int gate_segment(struct gate *g, struct flow *f, const struct flowkey_packet *p,
		 enum session_action action, bool no_offload)
{
	struct gate_flow *gf = f->gate;
	struct decision d;

	g->cur_flow = NULL;
	if (!gf)
		return NF_ACCEPT;
	if (gf->dane_wait && p->dir == TLSGATE_DIR_TO_SERVER) {
		if (gate_dane_known(g, f)) {
			gf->dane_wait = false;
			gate_learn_destination(g, gf);
			log_info("STARTTLS to %s [%s] goes on: its DANE state is known", gf->mx,
				 gf->server_text);
			/* what is known now may refuse it before the handshake */
			struct decide_input in = gate_input(g, f, DECIDE_PHASE_CONNECT);
			struct decision known = decide(&in);
			if (known.action == DECIDE_BLOCK_TEMP || known.action == DECIDE_BLOCK_PERM) {
				gate_keep(gf, &known);
				return gate_refuse_starttls(g, f, p);
			}
		} else if (mono_ns() < gf->dane_wait_until_ns) {
			return NF_DROP;
		} else {
			/* RFC 7672 2.2: a lookup that did not end is not "no
			 * DANE": 454 to STARTTLS, 451 4.7.5 to what follows. */
			gf->dane_wait = false;
			g->stats.dane_wait_timeouts++;
			struct decide_input in = gate_input(g, f, DECIDE_PHASE_CONNECT);
			in.dane = DECIDE_DANE_FAILED;
			d = decide(&in);
			gate_keep(gf, &d);
			return gate_refuse_starttls(g, f, p);
		}
	}
	if (gf->refusal_deferred) {
		gate_deferred_refusal(g, f, p);
		return NF_ACCEPT;
	}
	if (gf->block_pending) {
		gf->block_pending = false;
		return gate_block(g, f, p, gate_pending(gf));
	}
	if (gf->starttls_refuse)
		return gate_refuse_starttls(g, f, p);
	if (gf->starttls_withheld) {
		/* Whatever the client says next (its MAIL FROM, or QUIT when it
		 * requires TLS) gets the refusal; the server is reset where it
		 * stopped. */
		if (p->dir == TLSGATE_DIR_TO_SERVER &&
		    (p->payload_len || (p->flags & (SESSION_TCP_FIN | SESSION_TCP_RST)))) {
			/* The session waits for the STARTTLS reply it never
			 * saw: the commands are read from the lines. */
			g->n_seg_verbs = enforce_verbs_from_lines(p->payload, p->payload_len,
								  g->seg_verbs, ENFORCE_VERBS_MAX,
								  &g->seg_verbs_over);
			return gate_block(g, f, p, gate_pending(gf));
		}
		return NF_ACCEPT;
	}
	const struct session_info *si = session_info(f->session);
	enum decide_reason blind = gate_blind(si, action);
	if (blind != DECIDE_REASON_PENDING) {
		/* DESIGN.md threat model, rule 1: the dialog can no longer be
		 * followed as both endpoints read it. Blocked (reset) when a
		 * requirement could apply, else passed and counted. */
		struct decide_input in = gate_input(g, f, si->phase >= SESSION_PHASE_TLS_HANDSHAKE
								  ? DECIDE_PHASE_TLS
								  : DECIDE_PHASE_DATA);
		in.blind = blind;
		d = decide(&in);
		log_debug("flow not followable (%s): anomalies=0x%x phase=%d -> %s",
			  decide_reason_name(blind), si->anomalies, (int)si->phase,
			  decide_action_name(d.action));
		if (d.action == DECIDE_BLOCK_TEMP || d.action == DECIDE_BLOCK_PERM)
			return gate_block(g, f, p, &d);
		g->stats.blind_passed[blind]++;
		g->stats.passed_plaintext++;
		gf->decided = true;
		gate_offload(g, f, no_offload);
		return NF_ACCEPT;
	}
	if (gf->decided) {
		/* PASS decided on a command: plaintext allowed, nothing later
		 * can change it. */
		gate_record(g, f, p, gate_pending(gf));
		g->stats.passed_plaintext++;
		gate_offload(g, f, no_offload);
		return NF_ACCEPT;
	}
	if (gate_pending(gf)->observed > DECIDE_LEVEL_UNKNOWN)
		gate_record(g, f, p, gate_pending(gf));

	switch (action) {
	case SESSION_OFFLOAD: {
		struct decide_input in = gate_input(g, f, DECIDE_PHASE_TLS);
		in.cert = gate_wire_dane(g, f);
		if (in.cert != DECIDE_CERT_UNSEEN && in.dane == DECIDE_DANE_NONE)
			in.dane = DECIDE_DANE_USABLE; /* validated TLSA known for this MX */
		if (!si->tls_judged && !si->tls_failed)
			in.must_judge = true;
		d = decide(&in);
		break;
	}
	case SESSION_CONTINUE: {
		/* Bytes sent ahead of the server's reply to DATA or STARTTLS
		 * (or of the greeting) cannot be read yet: commands, content or
		 * TLS? The receiver will read them one way or the other, so
		 * they are withheld (the client sends them again) until the
		 * reply tells, where anything could be required. */
		/* The same for bytes beyond a hole: the receiver keeps them
		 * and reads them the moment the hole is filled, before the
		 * session could judge them against the replies in between.
		 * Only what the session has read in order is forwarded. */
		uint32_t held, next;
		uint32_t end = p->seq + (uint32_t)p->payload_len;
		if (p->dir == TLSGATE_DIR_TO_SERVER && !g->seg_copied && p->payload_len &&
		    !f->content &&
		    ((session_client_waiting(f->session, &held) && (int32_t)(end - held) > 0) ||
		     (session_client_next(f->session, &next) && (int32_t)(end - next) > 0))) {
			struct decide_input in = gate_input(g, f, DECIDE_PHASE_DATA);
			if (decide_may_require(&in)) {
				g->stats.withheld_ahead++;
				return NF_DROP;
			}
		}
		gate_content_want(g, f, no_offload);
		return NF_ACCEPT;
	}
	default:
		return NF_ACCEPT;
	}
	if (d.action == DECIDE_BLOCK_TEMP || d.action == DECIDE_BLOCK_PERM)
		return gate_block(g, f, p, &d);
	gate_record(g, f, p, &d);
	if (d.action == DECIDE_PASS) {
		if (d.observed >= DECIDE_LEVEL_TLS)
			g->stats.passed_tls++;
		else
			g->stats.passed_plaintext++;
		gf->decided = true;
		gate_offload(g, f, no_offload);
	}
	return NF_ACCEPT;
}

void gate_content_sync(struct gate *g, struct flow *f, const struct flowkey_packet *p)
{
	if (f->content && f->session)
		gate_content_return(g, f, p);
}

void gate_before_segment(struct gate *g, struct flow *f, const struct flowkey_packet *p,
			 const struct tlsgate_reply_event *copy)
{
	g->cur_flow = f;
	g->seg_copied = copy != NULL;
	g->seg_passed = copy && (copy->flags & TLSGATE_REPLY_PASSED) &&
			(int64_t)(copy->passed_ns - f->entry_written_ns) > 0;
	g->n_seg_verbs = 0;
	g->seg_verbs_over = false;
	/* The copy says where this content ended (an older content's end,
	 * from a copy made before this handover, is before its start). */
	if (f->content && f->session && copy && (copy->flags & TLSGATE_REPLY_ENDED) &&
	    (int32_t)(copy->content_seq - f->content_from) > 0)
		gate_content_back(g, f, copy->content_seq, true, true);
	gate_content_sync(g, f, p);
	/* A BDAT chunk that ends in this client segment: if the segment is
	 * withheld, that chunk's reply is owed too (as for DATA's "."). */
	uint32_t end;
	if (f->session && p->dir == TLSGATE_DIR_TO_SERVER &&
	    session_chunk_pending(f->session, &end) && (int32_t)(end - p->seq) > 0 &&
	    (int32_t)(end - (p->seq + (uint32_t)p->payload_len)) <= 0)
		g->seg_verbs[g->n_seg_verbs++] = SMTP_VERB_END_OF_DATA;
}

struct store *gate_store(struct gate *g)
{
	return g->store;
}

int gate_release(struct gate *g, const char *mx, const char *by)
{
	gate_flush(g);
	gate_dest_flush(g);
	int rc = store_history_release(g->store, mx, by, wall_now());
	if (rc == 0)
		log_info("history lock on %s released by %s", mx, by);
	return rc;
}

void gate_stats_json(struct gate *g, json_t *obj)
{
	json_t *reasons = json_object();
	for (int i = 0; i < DECIDE_REASON_MAX && i < 32; i++)
		if (g->stats.by_reason[i])
			json_object_set_new(reasons, decide_reason_name((enum decide_reason)i),
					    json_integer((json_int_t)g->stats.by_reason[i]));
	json_t *blind = json_object();
	for (int i = 0; i < DECIDE_REASON_MAX && i < 32; i++)
		if (g->stats.blind_passed[i])
			json_object_set_new(blind, decide_reason_name((enum decide_reason)i),
					    json_integer((json_int_t)g->stats.blind_passed[i]));
	json_t *pol = json_object();
	if (g->policy) {
		json_object_set_new(pol, "serial", json_integer((json_int_t)policy_serial(g->policy)));
		json_object_set_new(pol, "expires", json_integer((json_int_t)policy_expires(g->policy)));
		json_object_set_new(pol, "sha256", json_string(g->policy_sha256));
	}
	json_object_set_new(pol, "key", json_boolean(g->have_key));
	json_object_set_new(pol, "secure_mode", json_boolean(g->policy != NULL));
	if (g->last_refusal[0])
		json_object_set_new(pol, "last_refusal", json_string(g->last_refusal));
	json_object_set_new(pol, "applied", json_integer((json_int_t)g->stats.policy_applied));
	json_object_set_new(pol, "refused", json_integer((json_int_t)g->stats.policy_refused));
	json_object_set_new(obj, "policy", pol);
	json_object_set_new(obj, "content",
			    json_pack("{s:I,s:I}", "handed_over",
				      (json_int_t)g->stats.content_handovers, "returned",
				      (json_int_t)g->stats.content_returns));
	json_object_set_new(
		obj, "verdicts",
		json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "blocked_temporary",
			  (json_int_t)g->stats.blocked_temp, "blocked_permanent",
			  (json_int_t)g->stats.blocked_perm, "passed_plaintext",
			  (json_int_t)g->stats.passed_plaintext, "passed_tls",
			  (json_int_t)g->stats.passed_tls, "refusals_injected",
			  (json_int_t)g->stats.refusals_injected, "resets_injected",
			  (json_int_t)g->stats.resets_injected, "inject_errors",
			  (json_int_t)g->stats.inject_errors, "first_seen",
			  (json_int_t)g->stats.first_seen, "locks", (json_int_t)g->stats.locks,
			  "blocked_by_reason", reasons));
	json_object_set_new(json_object_get(obj, "verdicts"), "passed_unfollowed_by_reason", blind);
	json_object_set_new(json_object_get(obj, "verdicts"), "refusals_repeated",
			    json_integer((json_int_t)enforce_repeated(g->enforce)));
	json_object_set_new(json_object_get(obj, "verdicts"), "withheld_ahead_of_reply",
			    json_integer((json_int_t)g->stats.withheld_ahead));
	json_object_set_new(obj, "dane_waits",
			    json_pack("{s:I,s:I}", "started", (json_int_t)g->stats.dane_waits,
				      "timed_out", (json_int_t)g->stats.dane_wait_timeouts));
}
