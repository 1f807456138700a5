/* probe_store.h - what tlsgate-probe --db writes for one probed target:
 * one probe_results row per MX address (or one domain-level row), the
 * validated TLSA RRset of each DANE MX, the TLS history level the probe saw
 * and the address -> MX mapping, all in one transaction. In the library (not in tlsgate-probe.c) so
 * the store tests write exactly what the probe writes. */
#ifndef TLSGATE_PROBE_STORE_H
#define TLSGATE_PROBE_STORE_H

#include "probe.h"
#include "store.h"

/* Writes t's result in one transaction. 0, or the first error (-EIO:
 * something was not stored, and the store logged what). */
int probe_store_record(struct store *db, const struct probe_target *t);

#endif
