/* policy.c - signed policy loading and lookups. Contract in policy.h,
 * schema in policy/README.md. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "policy.h"
#include "log.h"
#include "tls_parse.h"

#define SERIAL_MAX ((UINT64_C(1) << 53) - 1) /* exact in every JSON reader */
#define NOTE_MAX 256
#define PROBE_AGE_MIN 60
#define PROBE_AGE_MAX (30 * 86400)

struct dom_entry {
	char *name; /* normalised */
	bool subdomains;
	struct policy_override ov;
};

struct dom_set {
	struct dom_entry *v;
	size_t n;
};

struct policy {
	uint64_t serial;
	time_t expires;
	uint16_t min_version;
	uint16_t *banned; /* sorted */
	size_t n_banned;
	struct dom_set sender_domains;
	struct dom_set recipient_domains;
	struct dom_set overrides;
	struct policy_prefix *prefixes;
	size_t n_prefixes;
	char **releases;
	size_t n_releases;
	enum policy_fail_mode fail_normal, fail_secure;
	uint32_t probe_max_age;
};



/* ---- small parsers ---- */

int policy_time_parse(const char *s, time_t *out)
{
	struct tm tm = { 0 }, back;
	unsigned int y, mo, d, h, mi, se;
	int n = 0;
	time_t t;

	if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != 'Z')
		return -EINVAL;
	for (int i = 0; i < 19; i++)
		if (i != 4 && i != 7 && i != 10 && i != 13 && i != 16 && !isdigit((unsigned char)s[i]))
			return -EINVAL;
	if (sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2uZ%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 20)
		return -EINVAL;
	if (y < 2000 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
		return -EINVAL;
	tm.tm_year = (int)y - 1900;
	tm.tm_mon = (int)mo - 1;
	tm.tm_mday = (int)d;
	tm.tm_hour = (int)h;
	tm.tm_min = (int)mi;
	tm.tm_sec = (int)se;
	t = timegm(&tm);
	/* timegm normalises 2027-02-30 to March: refuse what does not round-trip */
	if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != (int)d ||
	    back.tm_mon != (int)mo - 1)
		return -EINVAL;
	*out = t;
	return 0;
}

static int parse_serial(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 16 || (len > 1 && s[0] == '0'))
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v == 0 || v > SERIAL_MAX)
		return -EINVAL;
	*out = v;
	return 0;
}

int policy_trusted_comment_parse(const char *tc, uint64_t *serial, time_t *expires, char *err,
				 size_t errlen)
{
	bool have_serial = false, have_expires = false;
	const char *p = tc;

	while (*p) {
		const char *tok;
		size_t len;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		tok = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		len = (size_t)(p - tok);
		if (len > 7 && memcmp(tok, "serial:", 7) == 0) {
			if (have_serial)
				return err_line(err, errlen, -EINVAL, "trusted comment: serial given twice");
			if (parse_serial(tok + 7, len - 7, serial) < 0)
				return err_line(err, errlen, -EINVAL,
					    "trusted comment: serial is not an integer 1..2^53-1");
			have_serial = true;
		} else if (len > 8 && memcmp(tok, "expires:", 8) == 0) {
			char buf[32];

			if (have_expires)
				return err_line(err, errlen, -EINVAL, "trusted comment: expires given twice");
			if (len - 8 >= sizeof(buf))
				return err_line(err, errlen, -EINVAL,
					    "trusted comment: expires is not YYYY-MM-DDTHH:MM:SSZ");
			memcpy(buf, tok + 8, len - 8);
			buf[len - 8] = '\0';
			if (policy_time_parse(buf, expires) < 0)
				return err_line(err, errlen, -EINVAL,
					    "trusted comment: expires is not YYYY-MM-DDTHH:MM:SSZ");
			have_expires = true;
		}
	}
	if (!have_serial || !have_expires)
		return err_line(err, errlen, -EINVAL,
			    "trusted comment lacks %s (sign with -t \"serial:N expires:YYYY-MM-DDTHH:MM:SSZ\")",
			    !have_serial ? "serial:" : "expires:");
	return 0;
}

int policy_cipher_from_name(const char *name, uint16_t *value)
{
	size_t i;

	if (name[0] == '0' && (name[1] == 'x' || name[1] == 'X') && strlen(name) == 6) {
		unsigned int v = 0;

		for (i = 2; i < 6; i++) {
			if (!isxdigit((unsigned char)name[i]))
				return -EINVAL;
		}
		sscanf(name + 2, "%4x", &v);
		*value = (uint16_t)v;
		return 0;
	}
	return tls_cipher_from_name(name, value);
}

/* One table of IANA names for the engine and the policy: tls_names.c. */
const char *policy_cipher_name(uint16_t value)
{
	return tls_cipher_name(value);
}

int policy_domain_normalize(const char *domain, char *buf, size_t bufsz)
{
	const char *at = strrchr(domain, '@');
	size_t len, i, label = 0;

	if (at)
		domain = at + 1;
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || len >= bufsz)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)domain[i];

		if (c == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
		buf[i] = (char)tolower(c);
	}
	if (label == 0)
		return -EINVAL;
	buf[len] = '\0';
	return 0;
}

/* ---- domain sets ---- */

static int dom_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dom_entry *)a)->name, ((const struct dom_entry *)b)->name);
}

static void dom_set_free(struct dom_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i].name);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Most specific entry that covers name (already normalised). */
static const struct dom_entry *dom_set_find(const struct dom_set *s, const char *name)
{
	const char *q = name;
	bool exact = true;

	if (s->n == 0)
		return NULL;
	for (;;) {
		struct dom_entry key = { .name = (char *)q };
		const struct dom_entry *e = bsearch(&key, s->v, s->n, sizeof(*s->v), dom_cmp);

		if (e && (exact || e->subdomains))
			return e;
		q = strchr(q, '.');
		if (!q)
			return NULL;
		q++;
		exact = false;
	}
}

static const struct dom_entry *dom_lookup(const struct dom_set *s, const char *domain)
{
	char buf[256];

	if (!domain || policy_domain_normalize(domain, buf, sizeof(buf)) < 0)
		return NULL;
	return dom_set_find(s, buf);
}

/* ---- JSON schema ---- */

struct ctx {
	char *err;
	size_t errlen;
};

static int bad(struct ctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(struct ctx *c, const char *path, const char *fmt, ...)
{
	char msg[POLICY_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_line(c->err, c->errlen, -EINVAL, "%s: %s", path, msg);
}

/* Refuses any key of obj not in allowed (NULL-terminated). */
static int only_keys(struct ctx *c, const char *path, json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		const char *const *a;

		for (a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (!*a)
			return bad(c, path, "unknown field \"%.64s\"", key);
	}
	return 0;
}

static int get_bool(struct ctx *c, const char *path, json_t *obj, const char *key, bool def,
		    bool required, bool *out)
{
	json_t *v = json_object_get(obj, key);

	if (!v) {
		if (required)
			return bad(c, path, "\"%s\" is required (true or false)", key);
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return bad(c, path, "\"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int parse_domain_list(struct ctx *c, const char *path, json_t *arr, struct dom_set *set)
{
	char p[96], name[256];
	size_t i;
	json_t *el;
	static const char *const keys[] = { "domain", "subdomains", NULL };

	if (!json_is_array(arr))
		return bad(c, path, "must be an array of {\"domain\", \"subdomains\"} objects");
	if (json_array_size(arr) > POLICY_MAX_ENTRIES)
		return bad(c, path, "more than %d entries", POLICY_MAX_ENTRIES);
	set->v = calloc(json_array_size(arr) + 1, sizeof(*set->v));
	if (!set->v)
		return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
	json_array_foreach(arr, i, el) {
		json_t *d;
		int rc;

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (!json_is_object(el))
			return bad(c, p, "must be an object {\"domain\": ..., \"subdomains\": ...}");
		if ((rc = only_keys(c, p, el, keys)) < 0)
			return rc;
		d = json_object_get(el, "domain");
		if (!json_is_string(d) || policy_domain_normalize(json_string_value(d), name, sizeof(name)) < 0 ||
		    strchr(json_string_value(d), '@'))
			return bad(c, p, "\"domain\" must be a domain name");
		if ((rc = get_bool(c, p, el, "subdomains", false, true, &set->v[set->n].subdomains)) < 0)
			return rc;
		set->v[set->n].name = strdup(name);
		if (!set->v[set->n].name)
			return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
		set->n++;
	}
	qsort(set->v, set->n, sizeof(*set->v), dom_cmp);
	for (i = 1; i < set->n; i++)
		if (strcmp(set->v[i - 1].name, set->v[i].name) == 0)
			return bad(c, path, "domain \"%s\" listed twice", set->v[i].name);
	return 0;
}

static int parse_prefix(const char *s, struct policy_prefix *out)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long len;
	int max, i;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	if (!isdigit((unsigned char)slash[1]) || (slash[1] == '0' && slash[2]))
		return -EINVAL;
	errno = 0;
	len = strtoul(slash + 1, &end, 10);
	if (errno || *end || len > (unsigned long)max)
		return -ERANGE;
	out->len = (uint8_t)len;
	/* host bits set usually means a typo in the length: refuse */
	for (i = 0; i < max; i++)
		if (i >= (int)len && (out->addr[i / 8] & (0x80 >> (i % 8))))
			return -EDOM;
	return 0;
}

static int parse_secure_mode(struct ctx *c, json_t *sm, struct policy *p)
{
	static const char *const keys[] = { "sender_domains", "sender_sources", "recipient_domains",
					    NULL };
	json_t *v, *el;
	size_t i;
	int rc;

	if (!json_is_object(sm))
		return bad(c, "secure_mode", "must be an object");
	if ((rc = only_keys(c, "secure_mode", sm, keys)) < 0)
		return rc;
	if ((v = json_object_get(sm, "sender_domains")) &&
	    (rc = parse_domain_list(c, "secure_mode.sender_domains", v, &p->sender_domains)) < 0)
		return rc;
	if ((v = json_object_get(sm, "recipient_domains")) &&
	    (rc = parse_domain_list(c, "secure_mode.recipient_domains", v, &p->recipient_domains)) < 0)
		return rc;
	v = json_object_get(sm, "sender_sources");
	if (!v)
		return 0;
	if (!json_is_array(v))
		return bad(c, "secure_mode.sender_sources", "must be an array of CIDR strings");
	if (json_array_size(v) > POLICY_MAX_ENTRIES)
		return bad(c, "secure_mode.sender_sources", "more than %d entries", POLICY_MAX_ENTRIES);
	p->prefixes = calloc(json_array_size(v) + 1, sizeof(*p->prefixes));
	if (!p->prefixes)
		return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
	json_array_foreach(v, i, el) {
		char path[64];

		snprintf(path, sizeof(path), "secure_mode.sender_sources[%zu]", i);
		if (!json_is_string(el))
			return bad(c, path, "must be a string such as \"192.0.2.0/24\"");
		rc = parse_prefix(json_string_value(el), &p->prefixes[p->n_prefixes]);
		if (rc == -ERANGE)
			return bad(c, path, "prefix length out of range (0-32 for IPv4, 0-128 for IPv6)");
		if (rc == -EDOM)
			return bad(c, path, "\"%.64s\" has bits set after the prefix length",
				   json_string_value(el));
		if (rc < 0)
			return bad(c, path, "\"%.64s\" is not ADDRESS/LENGTH", json_string_value(el));
		p->n_prefixes++;
	}
	return 0;
}

static int parse_overrides(struct ctx *c, json_t *obj, struct policy *p)
{
	static const char *const keys[] = { "require_tls", "require_dane", "allow_plaintext",
					    "subdomains", NULL };
	const char *key;
	json_t *v;
	size_t i;
	int rc;

	if (!json_is_object(obj))
		return bad(c, "domains", "must be an object keyed by domain name");
	if (json_object_size(obj) > POLICY_MAX_ENTRIES)
		return bad(c, "domains", "more than %d entries", POLICY_MAX_ENTRIES);
	p->overrides.v = calloc(json_object_size(obj) + 1, sizeof(*p->overrides.v));
	if (!p->overrides.v)
		return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
	json_object_foreach(obj, key, v) {
		struct dom_entry *e = &p->overrides.v[p->overrides.n];
		char path[128], name[256];

		snprintf(path, sizeof(path), "domains.%.100s", key);
		if (policy_domain_normalize(key, name, sizeof(name)) < 0 || strchr(key, '@'))
			return bad(c, path, "key is not a domain name");
		if (!json_is_object(v))
			return bad(c, path, "must be an object");
		if ((rc = only_keys(c, path, v, keys)) < 0 ||
		    (rc = get_bool(c, path, v, "require_tls", false, false, &e->ov.require_tls)) < 0 ||
		    (rc = get_bool(c, path, v, "require_dane", false, false, &e->ov.require_dane)) < 0 ||
		    (rc = get_bool(c, path, v, "allow_plaintext", false, false, &e->ov.allow_plaintext)) < 0 ||
		    (rc = get_bool(c, path, v, "subdomains", false, false, &e->subdomains)) < 0)
			return rc;
		if (e->ov.allow_plaintext && (e->ov.require_tls || e->ov.require_dane))
			return bad(c, path, "allow_plaintext contradicts require_tls/require_dane");
		if (!e->ov.allow_plaintext && !e->ov.require_tls && !e->ov.require_dane)
			return bad(c, path, "sets none of require_tls, require_dane, allow_plaintext");
		if (e->ov.require_dane)
			e->ov.require_tls = true;
		e->name = strdup(name);
		if (!e->name)
			return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
		p->overrides.n++;
	}
	qsort(p->overrides.v, p->overrides.n, sizeof(*p->overrides.v), dom_cmp);
	for (i = 1; i < p->overrides.n; i++)
		if (strcmp(p->overrides.v[i - 1].name, p->overrides.v[i].name) == 0)
			return bad(c, "domains", "domain \"%s\" listed twice (spelling differs)",
				   p->overrides.v[i].name);
	return 0;
}

static int parse_tls(struct ctx *c, json_t *tls, struct policy *p)
{
	static const char *const keys[] = { "min_version", "banned_ciphers", NULL };
	static const struct {
		const char *name;
		uint16_t v;
	} versions[] = { { "1.0", POLICY_TLS_1_0 }, { "1.1", POLICY_TLS_1_1 },
			 { "1.2", POLICY_TLS_1_2 }, { "1.3", POLICY_TLS_1_3 } };
	json_t *v, *el;
	size_t i;
	int rc;

	if (!json_is_object(tls))
		return bad(c, "tls", "must be an object");
	if ((rc = only_keys(c, "tls", tls, keys)) < 0)
		return rc;
	if ((v = json_object_get(tls, "min_version"))) {
		const char *s = json_string_value(v);

		for (i = 0; s && i < sizeof(versions) / sizeof(versions[0]); i++)
			if (strcmp(s, versions[i].name) == 0)
				break;
		if (!s || i == sizeof(versions) / sizeof(versions[0]))
			return bad(c, "tls.min_version", "must be \"1.0\", \"1.1\", \"1.2\" or \"1.3\"");
		p->min_version = versions[i].v;
	}
	v = json_object_get(tls, "banned_ciphers");
	if (!v)
		return 0;
	if (!json_is_array(v))
		return bad(c, "tls.banned_ciphers", "must be an array of IANA cipher suite names");
	if (json_array_size(v) > POLICY_MAX_CIPHERS)
		return bad(c, "tls.banned_ciphers", "more than %d entries", POLICY_MAX_CIPHERS);
	p->banned = calloc(json_array_size(v) + 1, sizeof(*p->banned));
	if (!p->banned)
		return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
	json_array_foreach(v, i, el) {
		char path[64];

		snprintf(path, sizeof(path), "tls.banned_ciphers[%zu]", i);
		if (!json_is_string(el) ||
		    policy_cipher_from_name(json_string_value(el), &p->banned[p->n_banned]) < 0)
			return bad(c, path, "unknown cipher suite (IANA name such as "
				   "\"TLS_RSA_WITH_3DES_EDE_CBC_SHA\", or \"0xHHHH\")");
		p->n_banned++;
	}
	return 0;
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static int parse_releases(struct ctx *c, json_t *arr, struct policy *p)
{
	static const char *const keys[] = { "host", "note", NULL };
	json_t *el;
	size_t i;
	int rc;

	if (!json_is_array(arr))
		return bad(c, "history_releases", "must be an array of {\"host\", \"note\"} objects");
	if (json_array_size(arr) > POLICY_MAX_ENTRIES)
		return bad(c, "history_releases", "more than %d entries", POLICY_MAX_ENTRIES);
	p->releases = calloc(json_array_size(arr) + 1, sizeof(*p->releases));
	if (!p->releases)
		return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
	json_array_foreach(arr, i, el) {
		char path[64], name[256];
		uint8_t a[16];
		json_t *h, *n;
		const char *hs;

		snprintf(path, sizeof(path), "history_releases[%zu]", i);
		if (!json_is_object(el))
			return bad(c, path, "must be an object");
		if ((rc = only_keys(c, path, el, keys)) < 0)
			return rc;
		h = json_object_get(el, "host");
		hs = json_string_value(h);
		if (!hs)
			return bad(c, path, "\"host\" (MX name or address) is required");
		if (inet_pton(AF_INET, hs, a) == 1 || inet_pton(AF_INET6, hs, a) == 1)
			snprintf(name, sizeof(name), "%s", hs);
		else if (policy_domain_normalize(hs, name, sizeof(name)) < 0 || strchr(hs, '@'))
			return bad(c, path, "\"host\" is neither a host name nor an address");
		n = json_object_get(el, "note");
		if (n && (!json_is_string(n) || strlen(json_string_value(n)) > NOTE_MAX))
			return bad(c, path, "\"note\" must be a string of at most %d bytes", NOTE_MAX);
		p->releases[p->n_releases] = strdup(name);
		if (!p->releases[p->n_releases])
			return err_line(c->err, c->errlen, -ENOMEM, "out of memory");
		p->n_releases++;
	}
	return 0;
}

static int parse_fail_mode(struct ctx *c, json_t *fm, struct policy *p)
{
	static const char *const keys[] = { "normal", "secure", NULL };
	static const char *const which[] = { "normal", "secure" };
	enum policy_fail_mode *dst[] = { &p->fail_normal, &p->fail_secure };
	int rc, i;

	if (!json_is_object(fm))
		return bad(c, "fail_mode", "must be an object");
	if ((rc = only_keys(c, "fail_mode", fm, keys)) < 0)
		return rc;
	for (i = 0; i < 2; i++) {
		json_t *v = json_object_get(fm, which[i]);
		const char *s = json_string_value(v);

		if (!v)
			continue;
		if (s && strcmp(s, "open") == 0 && i == 1)
			return bad(c, "fail_mode",
				   "\"secure\" cannot be \"open\": secure mode always fails closed "
				   "(drop the field or say \"closed\")");
		if (s && strcmp(s, "open") == 0)
			*dst[i] = POLICY_FAIL_OPEN;
		else if (s && strcmp(s, "closed") == 0)
			*dst[i] = POLICY_FAIL_CLOSED;
		else
			return bad(c, "fail_mode", "\"%s\" must be \"open\" or \"closed\"", which[i]);
	}
	return 0;
}

static int parse_root(struct ctx *c, json_t *root, struct policy *p)
{
	static const char *const keys[] = { "policy_version", "serial", "expires", "comment", "tls",
					    "secure_mode", "domains", "history_releases",
					    "fail_mode", "dane_probe_max_age", NULL };
	json_t *v;
	int rc;

	if (!json_is_object(root))
		return bad(c, "policy", "top level must be a JSON object");
	if ((rc = only_keys(c, "policy", root, keys)) < 0)
		return rc;
	v = json_object_get(root, "policy_version");
	if (!json_is_integer(v) || json_integer_value(v) != POLICY_SCHEMA_VERSION)
		return bad(c, "policy_version", "must be %d", POLICY_SCHEMA_VERSION);
	v = json_object_get(root, "serial");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    (uint64_t)json_integer_value(v) > SERIAL_MAX)
		return bad(c, "serial", "required, an integer 1..2^53-1");
	p->serial = (uint64_t)json_integer_value(v);
	v = json_object_get(root, "expires");
	if (!json_is_string(v) || policy_time_parse(json_string_value(v), &p->expires) < 0)
		return bad(c, "expires", "required, \"YYYY-MM-DDTHH:MM:SSZ\" (UTC)");
	v = json_object_get(root, "comment");
	if (v && (!json_is_string(v) || strlen(json_string_value(v)) > 1024))
		return bad(c, "comment", "must be a string of at most 1024 bytes");
	if ((v = json_object_get(root, "tls")) && (rc = parse_tls(c, v, p)) < 0)
		return rc;
	if (p->n_banned)
		qsort(p->banned, p->n_banned, sizeof(*p->banned), cmp_u16);
	if ((v = json_object_get(root, "secure_mode")) && (rc = parse_secure_mode(c, v, p)) < 0)
		return rc;
	if ((v = json_object_get(root, "domains")) && (rc = parse_overrides(c, v, p)) < 0)
		return rc;
	if ((v = json_object_get(root, "history_releases")) && (rc = parse_releases(c, v, p)) < 0)
		return rc;
	if ((v = json_object_get(root, "fail_mode")) && (rc = parse_fail_mode(c, v, p)) < 0)
		return rc;
	v = json_object_get(root, "dane_probe_max_age");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < PROBE_AGE_MIN ||
		    json_integer_value(v) > PROBE_AGE_MAX)
			return bad(c, "dane_probe_max_age", "must be an integer %d..%d (seconds)",
				   PROBE_AGE_MIN, PROBE_AGE_MAX);
		p->probe_max_age = (uint32_t)json_integer_value(v);
	}
	return 0;
}

void policy_free(struct policy *p)
{
	size_t i;

	if (!p)
		return;
	dom_set_free(&p->sender_domains);
	dom_set_free(&p->recipient_domains);
	dom_set_free(&p->overrides);
	for (i = 0; i < p->n_releases; i++)
		free(p->releases[i]);
	free(p->releases);
	free(p->prefixes);
	free(p->banned);
	free(p);
}

int policy_parse(const char *json, size_t len, struct policy **out, char *err, size_t errlen)
{
	struct ctx c = { err, errlen };
	json_error_t jerr;
	struct policy *p;
	json_t *root;
	int rc;

	*out = NULL;
	if (len > POLICY_MAX_BYTES)
		return err_line(err, errlen, -EFBIG, "policy larger than %d bytes", POLICY_MAX_BYTES);
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_line(err, errlen, -EINVAL, "malformed JSON at line %d column %d: %s",
			    jerr.line, jerr.column, jerr.text);
	p = calloc(1, sizeof(*p));
	if (!p) {
		json_decref(root);
		return err_line(err, errlen, -ENOMEM, "out of memory");
	}
	p->min_version = POLICY_TLS_1_2;
	p->fail_normal = POLICY_FAIL_OPEN;
	p->fail_secure = POLICY_FAIL_CLOSED;
	p->probe_max_age = POLICY_DANE_PROBE_MAX_AGE_DEFAULT;
	rc = parse_root(&c, root, p);
	json_decref(root);
	if (rc < 0) {
		policy_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int policy_load_mem(const char *name, const char *json, size_t json_len, const char *sig_text,
		    size_t sig_len, const struct minisign_pubkey *pk, uint64_t applied_serial,
		    time_t now, struct policy **out, char *err, size_t errlen)
{
	char msg[POLICY_ERR_MAX], when[32];
	struct minisign_sig *sig;
	struct policy *p;
	uint64_t serial;
	time_t expires;
	struct tm tm;
	int rc;

	*out = NULL;
	if (json_len > POLICY_MAX_BYTES)
		return err_line(err, errlen, -EFBIG, "%s: larger than %d bytes", name, POLICY_MAX_BYTES);
	sig = malloc(sizeof(*sig));
	if (!sig)
		return err_line(err, errlen, -ENOMEM, "out of memory");
	rc = minisign_sig_parse(sig_text, sig_len, sig, msg, sizeof(msg));
	if (rc == 0)
		rc = minisign_verify(pk, sig, (const uint8_t *)json, json_len, msg, sizeof(msg));
	if (rc == 0)
		rc = policy_trusted_comment_parse(sig->trusted_comment, &serial, &expires, msg,
						  sizeof(msg));
	free(sig);
	if (rc < 0)
		return err_line(err, errlen, rc, "%s: %s", name, msg);
	if (serial <= applied_serial)
		return err_line(err, errlen, -ESTALE,
			    "%s: serial %" PRIu64 " is not newer than the applied serial %" PRIu64
			    " (rollback refused)", name, serial, applied_serial);
	if (expires <= now) {
		gmtime_r(&expires, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		return err_line(err, errlen, -EKEYEXPIRED, "%s: policy expired at %s", name, when);
	}
	rc = policy_parse(json, json_len, &p, msg, sizeof(msg));
	if (rc < 0)
		return err_line(err, errlen, rc, "%s: %s", name, msg);
	if (p->serial != serial || p->expires != expires) {
		const char *what = p->serial != serial ? "serial" : "expires";

		policy_free(p);
		return err_line(err, errlen, -EINVAL,
			    "%s: %s in the JSON differs from the signed trusted comment", name, what);
	}
	*out = p;
	return 0;
}

int policy_load(const char *path_json, const char *path_sig, const struct minisign_pubkey *pk,
		uint64_t applied_serial, time_t now, struct policy **out, char *err, size_t errlen)
{
	char *json = NULL, *sig = NULL;
	size_t json_len, sig_len;
	int rc;

	*out = NULL;
	rc = minisign_file_read(path_json, POLICY_MAX_BYTES, &json, &json_len, err, errlen);
	if (rc == 0)
		rc = minisign_file_read(path_sig, MINISIGN_SIG_MAX_BYTES, &sig, &sig_len, err, errlen);
	if (rc == 0)
		rc = policy_load_mem(path_json, json, json_len, sig, sig_len, pk, applied_serial,
				     now, out, err, errlen);
	free(json);
	free(sig);
	return rc;
}

/* ---- lookups ---- */

uint64_t policy_serial(const struct policy *p)
{
	return p ? p->serial : 0;
}

time_t policy_expires(const struct policy *p)
{
	return p ? p->expires : 0;
}

uint16_t policy_min_tls_version(const struct policy *p)
{
	return p ? p->min_version : POLICY_TLS_1_2;
}

bool policy_cipher_banned(const struct policy *p, uint16_t cipher)
{
	return p && p->n_banned &&
	       bsearch(&cipher, p->banned, p->n_banned, sizeof(*p->banned), cmp_u16) != NULL;
}

bool policy_sender_domain_secure(const struct policy *p, const char *domain)
{
	return p && dom_lookup(&p->sender_domains, domain) != NULL;
}

bool policy_recipient_domain_secure(const struct policy *p, const char *domain)
{
	return p && dom_lookup(&p->recipient_domains, domain) != NULL;
}

bool policy_domain_override(const struct policy *p, const char *domain,
			    struct policy_override *ov)
{
	const struct dom_entry *e = p ? dom_lookup(&p->overrides, domain) : NULL;

	if (!e)
		return false;
	*ov = e->ov;
	return true;
}

static bool prefix_match(const uint8_t *addr, const uint8_t *net, unsigned int len)
{
	unsigned int full = len / 8, rest = len % 8;

	if (memcmp(addr, net, full) != 0)
		return false;
	return rest == 0 || ((addr[full] ^ net[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool policy_sender_address_secure(const struct policy *p, int af, const void *addr)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *a = addr;
	size_t i;

	if (!p || !addr)
		return false;
	if (af == AF_INET6 && memcmp(a, mapped, sizeof(mapped)) == 0) {
		af = AF_INET;
		a += 12;
	}
	if (af != AF_INET && af != AF_INET6)
		return false;
	for (i = 0; i < p->n_prefixes; i++)
		if (p->prefixes[i].family == af && prefix_match(a, p->prefixes[i].addr, p->prefixes[i].len))
			return true;
	return false;
}

bool policy_has_secure_sender_domains(const struct policy *p)
{
	return p && p->sender_domains.n > 0;
}

bool policy_has_secure_recipient_domains(const struct policy *p)
{
	return p && p->recipient_domains.n > 0;
}

bool policy_has_required_domains(const struct policy *p)
{
	for (size_t i = 0; p && i < p->overrides.n; i++)
		if (p->overrides.v[i].ov.require_tls || p->overrides.v[i].ov.require_dane)
			return true;
	return false;
}

size_t policy_sender_prefixes(const struct policy *p, const struct policy_prefix **list)
{
	*list = p ? p->prefixes : NULL;
	return p ? p->n_prefixes : 0;
}

size_t policy_refusing_domains(const struct policy *p, const char **names, size_t max)
{
	size_t n = 0, i;

	if (!p)
		return 0;
	for (i = 0; i < p->overrides.n; i++)
		if ((p->overrides.v[i].ov.require_tls || p->overrides.v[i].ov.require_dane) && n < max)
			names[n++] = p->overrides.v[i].name;
	for (i = 0; i < p->recipient_domains.n && n < max; i++)
		names[n++] = p->recipient_domains.v[i].name;
	return n;
}

size_t policy_secure_domains(const struct policy *p, const char **names, unsigned int *flags,
			     size_t max)
{
	size_t n = 0, i;

	if (!p)
		return 0;
	for (i = 0; i < p->sender_domains.n && n < max; i++, n++) {
		names[n] = p->sender_domains.v[i].name;
		flags[n] = POLICY_SECURE_SENDER |
			   (p->sender_domains.v[i].subdomains ? POLICY_SECURE_SUBDOMAINS : 0);
	}
	for (i = 0; i < p->recipient_domains.n && n < max; i++, n++) {
		names[n] = p->recipient_domains.v[i].name;
		flags[n] = POLICY_SECURE_RECIPIENT |
			   (p->recipient_domains.v[i].subdomains ? POLICY_SECURE_SUBDOMAINS : 0);
	}
	return n;
}

size_t policy_history_releases(const struct policy *p, const char *const **hosts)
{
	*hosts = p ? (const char *const *)p->releases : NULL;
	return p ? p->n_releases : 0;
}

enum policy_fail_mode policy_fail_mode_normal(const struct policy *p)
{
	return p ? p->fail_normal : POLICY_FAIL_OPEN;
}

enum policy_fail_mode policy_fail_mode_secure(const struct policy *p)
{
	return p ? p->fail_secure : POLICY_FAIL_CLOSED;
}

uint32_t policy_dane_probe_max_age(const struct policy *p)
{
	return p ? p->probe_max_age : POLICY_DANE_PROBE_MAX_AGE_DEFAULT;
}
