/* netfilter.h - the one netfilter rule per address family that sends packets
 * carrying the tagger's inspection mark to NFQUEUE:
 *
 *   iptables  -I FORWARD -m mark --mark M/MASK -j NFQUEUE --queue-num N --queue-bypass
 *   ip6tables (the same)
 *
 * Done through the iptables binaries (the nftables `queue` statement is not
 * available on every kernel; iptables' NFQUEUE target is). --queue-bypass
 * makes the kernel accept marked packets while no tlsgated is bound: that is
 * the fail-open for ordinary mail.
 *
 * Both calls are idempotent: add checks first (-C) and does not duplicate;
 * remove deletes every copy. Both return -errno on failure and log what
 * failed; add returns 1 when it inserted a rule, 0 when both were there. */
#ifndef TLSGATE_NETFILTER_H
#define TLSGATE_NETFILTER_H

#include <stdint.h>

struct netfilter_rule {
	uint32_t mark;
	uint32_t mask;
	uint16_t queue_num;
	const char *chain; /* "FORWARD" */
};

int netfilter_add(const struct netfilter_rule *r);
int netfilter_remove(const struct netfilter_rule *r);

#endif
