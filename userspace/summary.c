/* summary.c - one session as JSON; see summary.h. */
#include <stdio.h>

#include "session_int.h"
#include "smtp_parse.h"
#include "summary.h"

const char *session_end_reason(const struct session *s)
{
	if (s->quit)
		return "quit";
	if (s->rst)
		return "rst";
	if (s->d[0].fin && s->d[1].fin)
		return "fin";
	if (s->timeout)
		return "timeout";
	return "open";
}

static json_t *hex_fp(const uint8_t *fp)
{
	char hex[SESSION_FP_LEN * 2 + 1];
	int i;

	for (i = 0; i < SESSION_FP_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", fp[i]);
	return json_string(hex);
}

static json_t *str_or_null(const char *v)
{
	return v && v[0] ? json_string(v) : json_null();
}

static json_t *tls_json(const struct session *s)
{
	const struct session_info *i = &s->info;
	json_t *t = json_object(), *chain = json_array(), *spki = json_array(), *cc = json_array();
	char vbuf[32], cbuf[16];
	const char *cn;
	unsigned int k;

	if (!t || !chain || !spki || !cc) {
		json_decref(t);
		json_decref(chain);
		json_decref(spki);
		json_decref(cc);
		return NULL;
	}
	json_object_set_new(t, "version",
			    i->tls_version ? json_string(tls_version_format(i->tls_version, vbuf, sizeof(vbuf)))
					   : json_null());
	cn = tls_cipher_name(i->tls_cipher);
	if (!cn && (s->sh_seen || i->tls_hrr) && i->tls_cipher) {
		snprintf(cbuf, sizeof(cbuf), "0x%04x", i->tls_cipher);
		cn = cbuf;
	}
	json_object_set_new(t, "cipher", str_or_null(s->sh_seen || i->tls_hrr ? cn : NULL));
	json_object_set_new(t, "server_name", str_or_null(i->sni));
	json_object_set_new(t, "established", json_boolean(i->tls_established));
	json_object_set_new(t, "judged", json_boolean(i->tls_judged));
	json_object_set_new(t, "failed", json_boolean(i->tls_failed));
	json_object_set_new(t, "resumed", json_boolean(i->tls_resumed));
	json_object_set_new(t, "hrr", json_boolean(i->tls_hrr));
	json_object_set_new(t, "alpn", str_or_null(s->tls ? s->tls->alpn : NULL));
	json_object_set_new(t, "last_alert", s->last_alert >= 0 ? json_integer(s->last_alert) : json_null());
	for (k = 0; k < s->n_certs; k++) {
		json_array_append_new(chain, hex_fp(s->tls->cert_fp[k]));
		json_array_append_new(spki, s->tls->spki_ok[k] ? hex_fp(s->tls->spki_fp[k]) : json_null());
	}
	for (k = 0; k < s->n_client_certs; k++)
		json_array_append_new(cc, hex_fp(s->tls->client_cert_fp[k]));
	json_object_set_new(t, "cert_chain_fps", chain);
	json_object_set_new(t, "spki_fps", spki);
	json_object_set_new(t, "client_cert_chain_fps", cc);
	return t;
}

json_t *session_summary_json(const struct session *s, const struct summary_endpoints *ep)
{
	const struct session_info *i = &s->info;
	json_t *o = json_object(), *caps, *st, *mf, *rt, *txns, *an, *by;
	unsigned int k, j;

	if (!o)
		return NULL;
	if (ep) {
		json_object_set_new(o, "orig_h", json_string(ep->orig_h ? ep->orig_h : ""));
		json_object_set_new(o, "orig_p", json_integer(ep->orig_p));
		json_object_set_new(o, "resp_h", json_string(ep->resp_h ? ep->resp_h : ""));
		json_object_set_new(o, "resp_p", json_integer(ep->resp_p));
	}
	json_object_set_new(o, "smtp", json_boolean(!(i->anomalies & SESSION_ANOM_NOT_SMTP) &&
						   (s->greeted || i->ehlo_name[0] || s->n_txns)));
	json_object_set_new(o, "midstream", json_boolean(i->midstream));
	json_object_set_new(o, "helo", str_or_null(i->ehlo_name));
	caps = json_array();
	for (k = 0; k < SMTP_CAP_COUNT; k++)
		if (i->smtp_caps & (1u << k))
			json_array_append_new(caps, json_string(smtp_cap_name(1u << k)));
	json_object_set_new(o, "capabilities", caps);
	st = json_object();
	json_object_set_new(st, "offered", json_boolean(i->starttls_offered));
	json_object_set_new(st, "issued", json_boolean(i->starttls_issued));
	json_object_set_new(st, "accepted", json_boolean(i->starttls_accepted));
	json_object_set_new(st, "reply", i->starttls_reply ? json_integer(i->starttls_reply) : json_null());
	json_object_set_new(o, "starttls", st);
	mf = json_array();
	rt = json_array();
	txns = json_array();
	for (k = 0; k < s->n_txns; k++) {
		const struct session_txn *t = &s->txns[k];
		json_t *tj = json_object(), *tr = json_array();

		if (t->mailfrom)
			json_array_append_new(mf, json_string(t->mailfrom));
		for (j = 0; j < t->n_rcpt; j++) {
			json_array_append_new(rt, json_string(t->rcpt[j]));
			json_array_append_new(tr, json_string(t->rcpt[j]));
		}
		json_object_set_new(tj, "mailfrom", t->mailfrom ? json_string(t->mailfrom) : json_null());
		json_object_set_new(tj, "rcptto", tr);
		json_object_set_new(tj, "mail_reply", t->mail_reply ? json_integer(t->mail_reply) : json_null());
		json_object_set_new(tj, "data_reply", t->data_reply ? json_integer(t->data_reply) : json_null());
		json_object_set_new(tj, "bdat", json_boolean(t->bdat));
		json_array_append_new(txns, tj);
	}
	json_object_set_new(o, "mailfrom", mf);
	json_object_set_new(o, "rcptto", rt);
	json_object_set_new(o, "transactions", txns);
	json_object_set_new(o, "tls",
			    (s->ch_seen || s->sh_seen || s->d[0].tls_seen || s->d[1].tls_seen) ? tls_json(s)
												: json_null());
	an = json_array();
	for (k = 0; k < SESSION_ANOM_COUNT; k++)
		if (i->anomalies & (1u << k))
			json_array_append_new(an, json_string(session_anomaly_name(1u << k)));
	json_object_set_new(o, "anomalies", an);
	json_object_set_new(o, "end", json_string(session_end_reason(s)));
	by = json_object();
	json_object_set_new(by, "client", json_integer((json_int_t)s->d[0].bytes));
	json_object_set_new(by, "server", json_integer((json_int_t)s->d[1].bytes));
	json_object_set_new(o, "bytes", by);
	return o;
}
