/* test_policy.c - signed policy loading: every refusal, the schema, and
 * the lookups. Keys and signatures are made at test time with minisign. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "policy.h"

/* 2026-06-01T00:00:00Z: tests never depend on the clock */
#define NOW ((time_t)1780272000)
#define EXAMPLES "policy/examples"

static char dir[64];
static struct minisign_pubkey pk1;
static char err[POLICY_ERR_MAX];

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void write_file(const char *name, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static const char *path_of(const char *name)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* Signs dir/name into dir/name.minisig with key k ("k1", "k2"); tc NULL
 * means minisign's default trusted comment; legacy selects -l. */
static void sign(const char *name, const char *key, const char *tc, bool legacy)
{
	char t[512] = "";

	if (tc)
		snprintf(t, sizeof(t), "-t '%s'", tc);
	assert_int_equal(run("cd %s && minisign -S %s -s %s.key -m %s -x %s.minisig %s >/dev/null 2>&1",
			     dir, legacy ? "-l" : "", key, name, name, t), 0);
}

static int load(const char *name, uint64_t applied, time_t now, struct policy **p)
{
	char sig[300];

	snprintf(sig, sizeof(sig), "%s.minisig", path_of(name));
	return policy_load(path_of(name), sig, &pk1, applied, now, p, err, sizeof(err));
}

static const char *good_json =
	"{\n"
	" \"policy_version\": 1, \"serial\": 42, \"expires\": \"2027-01-01T00:00:00Z\",\n"
	" \"tls\": {\"min_version\": \"1.3\", \"banned_ciphers\": [\"TLS_RSA_WITH_RC4_128_SHA\", \"0xC012\"]},\n"
	" \"secure_mode\": {\n"
	"   \"sender_domains\": [{\"domain\": \"Secure.Example.ORG.\", \"subdomains\": true},\n"
	"                        {\"domain\": \"legal.example.org\", \"subdomains\": false}],\n"
	"   \"sender_sources\": [\"192.0.2.0/28\", \"2001:db8:25::/64\", \"203.0.113.9/32\"],\n"
	"   \"recipient_domains\": [{\"domain\": \"vault.example.org\", \"subdomains\": false}]},\n"
	" \"domains\": {\"bank.example.net\": {\"require_dane\": true},\n"
	"   \"example.com\": {\"require_tls\": true, \"subdomains\": true},\n"
	"   \"legacy.example.com\": {\"allow_plaintext\": true}},\n"
	" \"history_releases\": [{\"host\": \"MX1.example.net.\", \"note\": \"ticket 1\"}, {\"host\": \"2001:db8::25\"}],\n"
	" \"fail_mode\": {\"normal\": \"closed\"},\n"
	" \"dane_probe_max_age\": 3600\n"
	"}\n";

static const char *good_tc = "serial:42 expires:2027-01-01T00:00:00Z";

static int setup(void **state)
{
	strcpy(dir, "/tmp/tlsgate-policy-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	if (run("cd %s && minisign -G -W -p k1.pub -s k1.key >/dev/null 2>&1 && "
		"minisign -G -W -p k2.pub -s k2.key >/dev/null 2>&1", dir) != 0) {
		fprintf(stderr, "minisign -G failed: is minisign installed (tests/lib/deps.sh)?\n");
		return -1;
	}
	if (minisign_pubkey_load(path_of("k1.pub"), &pk1, err, sizeof(err)) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	run("rm -rf %s", dir);
	return 0;
}

static void test_signed_policy_loads(void **state)
{
	struct policy *p = NULL;
	int legacy;

	for (legacy = 0; legacy < 2; legacy++) {
		write_file("good.json", good_json);
		sign("good.json", "k1", good_tc, legacy);
		assert_int_equal(load("good.json", 41, NOW, &p), 0);
		assert_non_null(p);
		assert_int_equal(policy_serial(p), 42);
		assert_int_equal(policy_expires(p), (time_t)1798761600);
		assert_int_equal(policy_min_tls_version(p), POLICY_TLS_1_3);
		assert_int_equal(policy_fail_mode_normal(p), POLICY_FAIL_CLOSED);
		assert_int_equal(policy_fail_mode_secure(p), POLICY_FAIL_CLOSED);
		assert_int_equal(policy_dane_probe_max_age(p), 3600);
		policy_free(p);
	}
	/* serial 0 applied = nothing applied yet */
	assert_int_equal(load("good.json", 0, NOW, &p), 0);
	policy_free(p);
}

static void expect_refusal(const char *name, uint64_t applied, time_t now, int want_rc,
			   const char *want_text)
{
	struct policy *p = (struct policy *)0x1;
	int rc = load(name, applied, now, &p);

	if (rc != want_rc || !strstr(err, want_text) || strchr(err, '\n'))
		fail_msg("%s: rc %d (want %d), error \"%s\" (want \"%s\")", name, rc, want_rc, err,
			 want_text);
	assert_null(p);
	assert_non_null(strstr(err, name)); /* names the file */
}

static void test_bad_signature(void **state)
{
	write_file("altered.json", good_json);
	sign("altered.json", "k1", good_tc, false);
	run("sed -i 's/legacy.example.com/legazy.example.com/' %s", path_of("altered.json"));
	expect_refusal("altered.json", 0, NOW, -EBADMSG, "signature does not match");
	/* truncated policy file */
	write_file("trunc.json", good_json);
	sign("trunc.json", "k1", good_tc, false);
	assert_int_equal(truncate(path_of("trunc.json"), 100), 0);
	expect_refusal("trunc.json", 0, NOW, -EBADMSG, "signature does not match");
	/* truncated signature file */
	write_file("truncsig.json", good_json);
	sign("truncsig.json", "k1", good_tc, false);
	assert_int_equal(truncate(path_of("truncsig.json.minisig"), 150), 0);
	expect_refusal("truncsig.json", 0, NOW, -EINVAL, "signature");
	/* missing signature file */
	write_file("nosig.json", good_json);
	expect_refusal("nosig.json", 0, NOW, -ENOENT, "No such file");
}

static void test_unknown_key(void **state)
{
	write_file("k2.json", good_json);
	sign("k2.json", "k2", good_tc, false);
	expect_refusal("k2.json", 0, NOW, -EKEYREJECTED, "unknown key");
}

static void test_rollback(void **state)
{
	write_file("rb.json", good_json);
	sign("rb.json", "k1", good_tc, false);
	expect_refusal("rb.json", 42, NOW, -ESTALE, "rollback");
	expect_refusal("rb.json", 1000, NOW, -ESTALE, "not newer than the applied serial 1000");
}

static void test_expired(void **state)
{
	write_file("exp.json", good_json);
	sign("exp.json", "k1", good_tc, false);
	expect_refusal("exp.json", 0, (time_t)1798761600, -EKEYEXPIRED, "expired at 2027-01-01T00:00:00Z");
	expect_refusal("exp.json", 0, (time_t)1798761600 + 86400 * 365, -EKEYEXPIRED, "expired");
	/* one second before: still good */
	{
		struct policy *p;

		assert_int_equal(load("exp.json", 0, (time_t)1798761599, &p), 0);
		policy_free(p);
	}
}

static void test_trusted_comment_must_carry_serial(void **state)
{
	write_file("tc.json", good_json);
	sign("tc.json", "k1", NULL, false); /* minisign's default comment */
	expect_refusal("tc.json", 0, NOW, -EINVAL, "trusted comment lacks serial:");
	sign("tc.json", "k1", "serial:42", false);
	expect_refusal("tc.json", 0, NOW, -EINVAL, "trusted comment lacks expires:");
	sign("tc.json", "k1", "serial:43 expires:2027-01-01T00:00:00Z", false);
	expect_refusal("tc.json", 0, NOW, -EINVAL, "serial in the JSON differs");
	sign("tc.json", "k1", "serial:42 expires:2027-06-01T00:00:00Z", false);
	expect_refusal("tc.json", 0, NOW, -EINVAL, "expires in the JSON differs");
	/* a signed comment with an old serial cannot smuggle a rollback */
	sign("tc.json", "k1", "serial:5 expires:2027-01-01T00:00:00Z", false);
	expect_refusal("tc.json", 10, NOW, -ESTALE, "rollback");
}

static void test_signed_but_invalid_json(void **state)
{
	static const struct {
		const char *json, *text;
	} cases[] = {
		{ "{\"policy_version\": 1, \"serial\": 42, \"expires\": \"2027-01-01T00:00:00Z\"",
		  "malformed JSON" },
		{ "{\"policy_version\": 1, \"serial\": 42, \"expires\": \"2027-01-01T00:00:00Z\", \"secure\": 1}",
		  "unknown field \"secure\"" },
		{ "{\"policy_version\": 1, \"serial\": 42, \"expires\": \"2027-01-01T00:00:00Z\", "
		  "\"tls\": {\"min_version\": \"1.4\"}}", "tls.min_version" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file("inv.json", cases[i].json);
		sign("inv.json", "k1", good_tc, false);
		expect_refusal("inv.json", 0, NOW, -EINVAL, cases[i].text);
	}
}

static void test_huge_file(void **state)
{
	FILE *fp = fopen(path_of("huge.json"), "w");

	assert_non_null(fp);
	fseek(fp, POLICY_MAX_BYTES, SEEK_SET);
	fputc(' ', fp);
	fclose(fp);
	write_file("huge.json.minisig", "x");
	expect_refusal("huge.json", 0, NOW, -EFBIG, "larger than 1048576 bytes");
}

/* ---- schema, unsigned ---- */

static void test_examples_parse(void **state)
{
	static const char *files[] = { "full.json", "minimal.json", "secure-sources-only.json" };
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[256], *buf;
		size_t len;
		struct policy *p;

		snprintf(path, sizeof(path), EXAMPLES "/%s", files[i]);
		assert_int_equal(minisign_file_read(path, POLICY_MAX_BYTES, &buf, &len, err, sizeof(err)), 0);
		if (policy_parse(buf, len, &p, err, sizeof(err)) != 0)
			fail_msg("%s: %s", path, err);
		policy_free(p);
		free(buf);
	}
}

static void test_defaults(void **state)
{
	struct policy *p;
	const char *j = "{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\"}";
	struct policy_override ov;
	const struct policy_prefix *pl;
	const char *const *hosts;
	int round;

	assert_int_equal(policy_parse(j, strlen(j), &p, err, sizeof(err)), 0);
	/* a policy without the optional fields and no policy at all agree */
	for (round = 0; round < 2; round++) {
		struct policy *q = round ? NULL : p;

		assert_int_equal(policy_min_tls_version(q), POLICY_TLS_1_2);
		assert_int_equal(policy_fail_mode_normal(q), POLICY_FAIL_OPEN);
		assert_int_equal(policy_fail_mode_secure(q), POLICY_FAIL_CLOSED);
		assert_int_equal(policy_dane_probe_max_age(q), POLICY_DANE_PROBE_MAX_AGE_DEFAULT);
		assert_false(policy_cipher_banned(q, 0x000A));
		assert_false(policy_sender_domain_secure(q, "example.org"));
		assert_false(policy_recipient_domain_secure(q, "example.org"));
		assert_false(policy_domain_override(q, "example.org", &ov));
		assert_false(policy_has_secure_sender_domains(q));
		assert_int_equal(policy_sender_prefixes(q, &pl), 0);
		assert_int_equal(policy_history_releases(q, &hosts), 0);
	}
	policy_free(p);
	policy_free(NULL);
}

static void test_schema_refusals(void **state)
{
#define HEAD "{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\", "
	static const struct {
		const char *json, *text;
	} cases[] = {
		{ "", "malformed JSON" },
		{ "[]", "top level must be a JSON object" },
		{ "{\"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\"}", "policy_version" },
		{ "{\"policy_version\": 2, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\"}", "policy_version: must be 1" },
		{ "{\"policy_version\": 1, \"expires\": \"2027-01-01T00:00:00Z\"}", "serial: required" },
		{ "{\"policy_version\": 1, \"serial\": 0, \"expires\": \"2027-01-01T00:00:00Z\"}", "serial" },
		{ "{\"policy_version\": 1, \"serial\": -3, \"expires\": \"2027-01-01T00:00:00Z\"}", "serial" },
		{ "{\"policy_version\": 1, \"serial\": 9007199254740992, \"expires\": \"2027-01-01T00:00:00Z\"}", "serial" },
		{ "{\"policy_version\": 1, \"serial\": 1.5, \"expires\": \"2027-01-01T00:00:00Z\"}", "serial" },
		{ "{\"policy_version\": 1, \"serial\": \"1\", \"expires\": \"2027-01-01T00:00:00Z\"}", "serial" },
		{ "{\"policy_version\": 1, \"serial\": 1}", "expires: required" },
		{ "{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-02-30T00:00:00Z\"}", "expires" },
		{ "{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01 00:00:00\"}", "expires" },
		{ "{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00+01:00\"}", "expires" },
		{ "{\"policy_version\": 1, \"serial\": 1, \"serial\": 2, \"expires\": \"2027-01-01T00:00:00Z\"}", "malformed JSON" },
		{ HEAD "\"Serial\": 1}", "unknown field \"Serial\"" },
		{ HEAD "\"tls\": {\"min_version\": \"1.2\", \"max_version\": \"1.3\"}}", "tls: unknown field \"max_version\"" },
		{ HEAD "\"tls\": {\"min_version\": 1.2}}", "tls.min_version" },
		{ HEAD "\"tls\": {\"min_version\": \"SSLv3\"}}", "tls.min_version" },
		{ HEAD "\"tls\": {\"banned_ciphers\": [\"TLS_RSA_WITH_RC4_128_SHA\", \"RC4-SHA\"]}}", "tls.banned_ciphers[1]: unknown cipher" },
		{ HEAD "\"tls\": {\"banned_ciphers\": [\"0x12345\"]}}", "tls.banned_ciphers[0]" },
		{ HEAD "\"tls\": {\"banned_ciphers\": \"TLS_RSA_WITH_RC4_128_SHA\"}}", "tls.banned_ciphers: must be an array" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [\"secure.example.org\"]}}", "secure_mode.sender_domains[0]: must be an object" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [{\"domain\": \"secure.example.org\"}]}}", "\"subdomains\" is required" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [{\"domain\": \"secure.example.org\", \"subdomains\": \"yes\"}]}}", "must be true or false" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [{\"domain\": \"bad..example.org\", \"subdomains\": true}]}}", "must be a domain name" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [{\"domain\": \"*.example.org\", \"subdomains\": true}]}}", "must be a domain name" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [{\"domain\": \"a@example.org\", \"subdomains\": true}]}}", "must be a domain name" },
		{ HEAD "\"secure_mode\": {\"sender_domains\": [{\"domain\": \"x.example.org\", \"subdomains\": true}, {\"domain\": \"X.example.org.\", \"subdomains\": false}]}}", "listed twice" },
		{ HEAD "\"secure_mode\": {\"recipient_domains\": [{\"domain\": \"v.example.org\", \"subdomains\": false, \"wildcard\": true}]}}", "secure_mode.recipient_domains[0]: unknown field \"wildcard\"" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [\"192.0.2.1/33\"]}}", "prefix length out of range" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [\"2001:db8::/129\"]}}", "prefix length out of range" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [\"192.0.2.1/24\"]}}", "bits set after the prefix length" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [\"192.0.2.1\"]}}", "is not ADDRESS/LENGTH" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [\"192.0.2.300/32\"]}}", "is not ADDRESS/LENGTH" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [\"192.0.2.1/-1\"]}}", "is not ADDRESS/LENGTH" },
		{ HEAD "\"secure_mode\": {\"sender_sources\": [3232235777]}}", "must be a string" },
		{ HEAD "\"secure_mode\": {\"senders\": []}}", "secure_mode: unknown field \"senders\"" },
		{ HEAD "\"domains\": {\"example.net\": {\"require_tls\": true, \"allow_plaintext\": true}}}", "contradicts" },
		{ HEAD "\"domains\": {\"example.net\": {}}}", "sets none of" },
		{ HEAD "\"domains\": {\"example.net\": {\"require_tls\": 1}}}", "must be true or false" },
		{ HEAD "\"domains\": {\"example.net\": {\"require_mta_sts\": true}}}", "domains.example.net: unknown field" },
		{ HEAD "\"domains\": {\"Example.net\": {\"require_tls\": true}, \"example.net.\": {\"require_tls\": true}}}", "listed twice" },
		{ HEAD "\"domains\": {\"not a domain\": {\"require_tls\": true}}}", "key is not a domain name" },
		{ HEAD "\"domains\": [\"example.net\"]}", "domains: must be an object" },
		{ HEAD "\"history_releases\": [{\"note\": \"x\"}]}", "\"host\" (MX name or address) is required" },
		{ HEAD "\"history_releases\": [{\"host\": \"mx 1\"}]}", "neither a host name nor an address" },
		{ HEAD "\"history_releases\": [{\"host\": \"mx1.example.net\", \"until\": \"2027\"}]}", "unknown field \"until\"" },
		{ HEAD "\"fail_mode\": {\"normal\": \"drop\"}}", "\"normal\" must be \"open\" or \"closed\"" },
		{ HEAD "\"fail_mode\": {\"secure\": false}}", "\"secure\" must be" },
		{ HEAD "\"fail_mode\": {\"secure\": \"open\"}}", "\"secure\" cannot be \"open\"" },
		{ HEAD "\"dane_probe_max_age\": 59}", "dane_probe_max_age" },
		{ HEAD "\"dane_probe_max_age\": 2592001}", "dane_probe_max_age" },
		{ HEAD "\"comment\": 5}", "comment" },
		/* raw and escaped newlines in input stay out of the one-line error */
		{ HEAD "\"a\\nb\": 1}", "unknown field \"a?b\"" },
		{ "{\"polersi: 1\\\n\"}", "malformed JSON" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = (struct policy *)0x1;
		int rc = policy_parse(cases[i].json, strlen(cases[i].json), &p, err, sizeof(err));

		if (rc != -EINVAL || !strstr(err, cases[i].text) || p != NULL || strchr(err, '\n'))
			fail_msg("case %zu: rc %d, \"%s\" (want \"%s\")", i, rc, err, cases[i].text);
	}
#undef HEAD
}

static void test_list_bound(void **state)
{
	size_t n = POLICY_MAX_ENTRIES + 1, i;
	size_t cap = 200 + n * 24;
	char *j = malloc(cap), *o = j;
	struct policy *p;

	assert_non_null(j);
	o += sprintf(o, "{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\", "
			"\"secure_mode\": {\"sender_sources\": [");
	for (i = 0; i < n; i++)
		o += sprintf(o, "%s\"192.0.2.%zu/32\"", i ? "," : "", i % 256);
	o += sprintf(o, "]}}");
	assert_int_equal(policy_parse(j, (size_t)(o - j), &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 10000 entries"));
	free(j);
	j = calloc(1, POLICY_MAX_BYTES + 1);
	assert_int_equal(policy_parse(j, POLICY_MAX_BYTES + 1, &p, err, sizeof(err)), -EFBIG);
	free(j);
}

/* Every strict prefix of a valid policy fails (the one without the final
 * newline is the only valid one). */
static void test_truncated_every_byte(void **state)
{
	size_t len = strlen(good_json), n;

	for (n = 0; n < len; n++) {
		struct policy *p;
		int rc = policy_parse(good_json, n, &p, err, sizeof(err));

		if (n == len - 1) {
			assert_int_equal(rc, 0);
			policy_free(p);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_null(p);
		}
	}
}

/* ---- lookups ---- */

static struct policy *good(void)
{
	struct policy *p;

	assert_int_equal(policy_parse(good_json, strlen(good_json), &p, err, sizeof(err)), 0);
	return p;
}

static void test_domain_lookups(void **state)
{
	struct policy *p = good();
	struct policy_override ov;

	/* case-insensitive, trailing dot, user@domain */
	assert_true(policy_sender_domain_secure(p, "secure.example.org"));
	assert_true(policy_sender_domain_secure(p, "SECURE.example.Org."));
	assert_true(policy_sender_domain_secure(p, "alice@Secure.Example.Org"));
	/* subdomains by explicit choice */
	assert_true(policy_sender_domain_secure(p, "a.b.secure.example.org"));
	assert_true(policy_sender_domain_secure(p, "legal.example.org"));
	assert_false(policy_sender_domain_secure(p, "eu.legal.example.org"));
	/* no suffix confusion */
	assert_false(policy_sender_domain_secure(p, "insecure.example.org"));
	assert_false(policy_sender_domain_secure(p, "example.org"));
	assert_false(policy_sender_domain_secure(p, "secure.example.org.evil.example"));
	/* hostile names */
	assert_false(policy_sender_domain_secure(p, ""));
	assert_false(policy_sender_domain_secure(p, "."));
	assert_false(policy_sender_domain_secure(p, "secure.example.org.."));
	assert_false(policy_sender_domain_secure(p, "x..secure.example.org"));
	assert_false(policy_sender_domain_secure(p, NULL));
	assert_true(policy_has_secure_sender_domains(p));

	assert_true(policy_recipient_domain_secure(p, "Vault.example.org"));
	assert_false(policy_recipient_domain_secure(p, "x.vault.example.org"));
	assert_true(policy_has_secure_recipient_domains(p));

	/* overrides: most specific wins */
	assert_true(policy_domain_override(p, "BANK.example.net.", &ov));
	assert_true(ov.require_dane && ov.require_tls && !ov.allow_plaintext);
	assert_false(policy_domain_override(p, "www.bank.example.net", &ov));
	assert_true(policy_domain_override(p, "mail.example.com", &ov));
	assert_true(ov.require_tls && !ov.require_dane);
	assert_true(policy_domain_override(p, "legacy.example.com", &ov));
	assert_true(ov.allow_plaintext && !ov.require_tls);
	assert_true(policy_domain_override(p, "x.legacy.example.com", &ov));
	assert_true(ov.require_tls); /* legacy. has no subdomains: example.com's rule */
	assert_false(policy_domain_override(p, "example.net", &ov));

	/* The kernel's rcpt_domains: a domain for which a RCPT TO may be
	 * refused is one of these or under one. */
	const char *names[8];
	size_t n = policy_refusing_domains(p, names, 8);
	assert_int_equal(n, 3);
	static const char *const probe[] = {
		"bank.example.net", "www.bank.example.net", "example.com", "mail.example.com",
		"legacy.example.com", "x.legacy.example.com", "vault.example.org",
		"x.vault.example.org", "example.net", "example.org", "secure.example.org",
	};
	for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
		bool refusing = policy_recipient_domain_secure(p, probe[i]) ||
				(policy_domain_override(p, probe[i], &ov) &&
				 (ov.require_tls || ov.require_dane));
		bool covered = false;
		for (const char *q = probe[i]; q; q = strchr(q, '.') ? strchr(q, '.') + 1 : NULL)
			for (size_t k = 0; k < n; k++)
				covered |= strcmp(q, names[k]) == 0;
		if (refusing && !covered)
			fail_msg("%s may be refused but is not covered", probe[i]);
	}
	assert_int_equal(policy_refusing_domains(p, names, 2), 2);
	assert_int_equal(policy_refusing_domains(NULL, names, 8), 0);
	policy_free(p);
}

static bool addr_secure(const struct policy *p, const char *s)
{
	uint8_t a[16];

	if (inet_pton(AF_INET, s, a) == 1)
		return policy_sender_address_secure(p, AF_INET, a);
	assert_int_equal(inet_pton(AF_INET6, s, a), 1);
	return policy_sender_address_secure(p, AF_INET6, a);
}

static void test_address_lookups(void **state)
{
	struct policy *p = good();
	const struct policy_prefix *pl;

	assert_true(addr_secure(p, "192.0.2.0"));
	assert_true(addr_secure(p, "192.0.2.15"));
	assert_false(addr_secure(p, "192.0.2.16"));
	assert_true(addr_secure(p, "203.0.113.9"));
	assert_false(addr_secure(p, "203.0.113.8"));
	/* IPv4-mapped IPv6, as in the flow key */
	assert_true(addr_secure(p, "::ffff:192.0.2.7"));
	assert_false(addr_secure(p, "::ffff:198.51.100.7"));
	/* IPv4 prefixes do not match IPv6 addresses with the same bytes */
	assert_false(addr_secure(p, "c000:0207::"));
	assert_true(addr_secure(p, "2001:db8:25::1"));
	assert_true(addr_secure(p, "2001:db8:25:0:ffff:ffff:ffff:ffff"));
	assert_false(addr_secure(p, "2001:db8:25:1::1"));
	assert_false(policy_sender_address_secure(p, AF_UNIX, "xxxxxxxxxxxxxxxx"));
	assert_int_equal(policy_sender_prefixes(p, &pl), 3);
	assert_int_equal(pl[1].family, AF_INET6);
	assert_int_equal(pl[1].len, 64);
	policy_free(p);
}

static void test_ciphers_and_releases(void **state)
{
	struct policy *p = good();
	const char *const *hosts;
	uint16_t v;
	unsigned int x;

	assert_true(policy_cipher_banned(p, 0x0005));
	assert_true(policy_cipher_banned(p, 0xC012));
	assert_false(policy_cipher_banned(p, 0xC02F));
	assert_int_equal(policy_history_releases(p, &hosts), 2);
	assert_string_equal(hosts[0], "mx1.example.net");
	assert_string_equal(hosts[1], "2001:db8::25");
	policy_free(p);

	assert_int_equal(policy_cipher_from_name("0xc02f", &v), 0);
	assert_int_equal(v, 0xC02F);
	assert_int_equal(policy_cipher_from_name("TLS_AES_128_GCM_SHA256", &v), 0);
	assert_int_equal(v, 0x1301);
	assert_int_equal(policy_cipher_from_name("tls_aes_128_gcm_sha256", &v), -EINVAL);
	assert_int_equal(policy_cipher_from_name("0xZZZZ", &v), -EINVAL);
	/* our IANA table agrees with wolfSSL's wherever wolfSSL knows a suite */
	for (x = 0; x <= 0xffff; x++) {
		const char *ours = policy_cipher_name((uint16_t)x);
		const char *theirs = wolfSSL_get_cipher_name_iana_from_suite((uint8_t)(x >> 8), (uint8_t)x);

		if (ours && theirs && strcasecmp(theirs, "None") != 0)
			if (strcmp(ours, theirs) != 0)
				fail_msg("0x%04X: ours %s, wolfSSL %s", x, ours, theirs);
		if (ours) {
			assert_int_equal(policy_cipher_from_name(ours, &v), 0);
			assert_int_equal(v, x);
		}
	}
}

static void test_trusted_comment_parse(void **state)
{
	uint64_t s;
	time_t t;

	assert_int_equal(policy_trusted_comment_parse("serial:42 expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), 0);
	assert_int_equal(s, 42);
	assert_int_equal(t, (time_t)1798761600);
	/* any order, tabs, other tokens ignored */
	assert_int_equal(policy_trusted_comment_parse("timestamp:1\texpires:2027-01-01T00:00:00Z  serial:7 file:p.json", &s, &t, err, sizeof(err)), 0);
	assert_int_equal(s, 7);
	assert_int_equal(policy_trusted_comment_parse("serial:1 serial:2 expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	assert_int_equal(policy_trusted_comment_parse("serial:01 expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_trusted_comment_parse("serial:0 expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_trusted_comment_parse("serial:99999999999999999999 expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_trusted_comment_parse("serial:1x expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_trusted_comment_parse("serial:1 expires:2027-13-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_trusted_comment_parse("myserial:1 expires:2027-01-01T00:00:00Z", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_trusted_comment_parse("", &s, &t, err, sizeof(err)), -EINVAL);
	assert_int_equal(policy_time_parse("2028-02-29T23:59:59Z", &t), 0);
	assert_int_equal(policy_time_parse("2027-02-29T00:00:00Z", &t), -EINVAL);
	assert_int_equal(policy_time_parse("2027-01-01T24:00:00Z", &t), -EINVAL);
	assert_int_equal(policy_time_parse("2027-01-01T00:00:00z", &t), -EINVAL);
	assert_int_equal(policy_time_parse("+027-01-01T00:00:00Z", &t), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signed_policy_loads),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_trusted_comment_must_carry_serial),
		cmocka_unit_test(test_signed_but_invalid_json),
		cmocka_unit_test(test_huge_file),
		cmocka_unit_test(test_examples_parse),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_schema_refusals),
		cmocka_unit_test(test_list_bound),
		cmocka_unit_test(test_truncated_every_byte),
		cmocka_unit_test(test_domain_lookups),
		cmocka_unit_test(test_address_lookups),
		cmocka_unit_test(test_ciphers_and_releases),
		cmocka_unit_test(test_trusted_comment_parse),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
