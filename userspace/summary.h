/* summary.h - one session as a JSON object (jansson), for tlsgate-replay,
 * the daemon's event records and the API.
 *
 * Fields (absent values are JSON null, lists may be empty):
 *   orig_h, orig_p, resp_h, resp_p   endpoints, only when given
 *   smtp          true when the dialog was SMTP
 *   midstream     picked up without the TCP handshake
 *   helo          EHLO/HELO argument (as sent)
 *   capabilities  EHLO keywords of the last successful EHLO reply
 *   starttls      {offered, issued, accepted, reply}
 *   mailfrom      senders of all transactions, in order ("" for <>)
 *   rcptto        recipients of all transactions, in order
 *   transactions  [{mailfrom, rcptto, mail_reply, data_reply, bdat}]
 *   tls           null when no TLS was seen, else {version (Zeek's
 *                 spelling: "TLSv12", "TLSv13", "TLSv13-draft23", "SSLv3",
 *                 "SSLv2"), cipher (IANA name, or "0xNNNN"), server_name
 *                 (SNI), established, judged, failed, resumed, hrr, alpn,
 *                 last_alert (number), cert_chain_fps, spki_fps,
 *                 client_cert_chain_fps (lowercase hex SHA-256 of each DER
 *                 certificate / SubjectPublicKeyInfo, leaf first)}
 *   anomalies     names from session_anomaly_name()
 *   end           "quit", "rst", "fin", "timeout" or "open"
 *   bytes         {client, server}: payload bytes seen
 */
#ifndef TLSGATE_SUMMARY_H
#define TLSGATE_SUMMARY_H

#include <jansson.h>
#include <stdint.h>

#include "session.h"

/* Endpoints as text (the session does not know them); NULL to omit. */
struct summary_endpoints {
	const char *orig_h;
	uint16_t orig_p;
	const char *resp_h;
	uint16_t resp_p;
};

/* Returns a new JSON object (caller json_decref()s it), or NULL when out
 * of memory. */
json_t *session_summary_json(const struct session *s, const struct summary_endpoints *ep);

/* How the dialog ended: "quit", "rst", "fin", "timeout" or "open". */
const char *session_end_reason(const struct session *s);

#endif
