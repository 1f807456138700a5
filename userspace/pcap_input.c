/* pcap_input.c - TCP segments from a capture file; see pcap_input.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <pcap/pcap.h>

#include "pcap_input.h"

#define LT_NULL 0
#define LT_EN10MB 1
#define LT_RAW_OLD 12
#define LT_RAW_OLD2 14
#define LT_RAW 101
#define LT_LOOP 108
#define LT_LINUX_SLL 113
#define LT_IPV4 228
#define LT_IPV6 229
#define LT_LINUX_SLL2 276

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int decode_tcp(const uint8_t *p, size_t len, struct pcap_tcp *out)
{
	size_t off;

	if (len < 20)
		return -EINVAL;
	off = (size_t)(p[12] >> 4) * 4;
	if (off < 20 || off > len)
		return -EINVAL;
	out->sport = be16(p);
	out->dport = be16(p + 2);
	out->seq = be32(p + 4);
	out->ack = be32(p + 8);
	out->flags = p[13];
	out->window = be16(p + 14);
	out->payload = p + off;
	out->len = len - off;
	return 0;
}

static int decode_ipv4(const uint8_t *p, size_t len, struct pcap_tcp *out)
{
	size_t ihl, tot;

	if (len < 20 || (p[0] >> 4) != 4)
		return -EINVAL;
	ihl = (size_t)(p[0] & 0x0f) * 4;
	tot = be16(p + 2);
	if (ihl < 20 || tot < ihl || ihl > len)
		return -EINVAL;
	if (tot < len)
		len = tot; /* drop link-layer padding */
	if (p[9] != 6)
		return -ENOENT;
	if (be16(p + 6) & 0x3fff) /* MF or offset: fragments are not reassembled */
		return -ENOENT;
	out->family = 4;
	memset(out->src, 0, sizeof(out->src));
	memset(out->dst, 0, sizeof(out->dst));
	memcpy(out->src, p + 12, 4);
	memcpy(out->dst, p + 16, 4);
	return decode_tcp(p + ihl, len - ihl, out);
}

static int decode_ipv6(const uint8_t *p, size_t len, struct pcap_tcp *out)
{
	size_t plen, off = 40;
	uint8_t nh;
	int hops;

	if (len < 40 || (p[0] >> 4) != 6)
		return -EINVAL;
	plen = be16(p + 4);
	if (40 + plen < len)
		len = 40 + plen;
	nh = p[6];
	for (hops = 0; hops < 8; hops++) {
		if (nh == 0 || nh == 43 || nh == 60) {
			if (off + 8 > len)
				return -EINVAL;
			nh = p[off];
			off += ((size_t)p[off + 1] + 1) * 8;
		} else if (nh == 44) {
			return -ENOENT; /* fragment */
		} else {
			break;
		}
	}
	if (nh != 6)
		return -ENOENT;
	if (off > len)
		return -EINVAL;
	out->family = 6;
	memcpy(out->src, p + 8, 16);
	memcpy(out->dst, p + 24, 16);
	return decode_tcp(p + off, len - off, out);
}

static int decode_ip(uint16_t ethertype, const uint8_t *p, size_t len, struct pcap_tcp *out)
{
	if (ethertype == 0x0800)
		return decode_ipv4(p, len, out);
	if (ethertype == 0x86dd)
		return decode_ipv6(p, len, out);
	return -ENOENT;
}

static int decode_raw(const uint8_t *p, size_t len, struct pcap_tcp *out)
{
	if (!len)
		return -EINVAL;
	if ((p[0] >> 4) == 4)
		return decode_ipv4(p, len, out);
	if ((p[0] >> 4) == 6)
		return decode_ipv6(p, len, out);
	return -ENOENT;
}

int pcap_input_decode(int linktype, const uint8_t *f, size_t len, struct pcap_tcp *out)
{
	uint16_t et;
	size_t off;
	int tags = 0;

	switch (linktype) {
	case LT_EN10MB:
		if (len < 14)
			return -EINVAL;
		et = be16(f + 12);
		off = 14;
		while ((et == 0x8100 || et == 0x88a8) && tags++ < 2) {
			if (off + 4 > len)
				return -EINVAL;
			et = be16(f + off + 2);
			off += 4;
		}
		return decode_ip(et, f + off, len - off, out);
	case LT_LINUX_SLL:
		if (len < 16)
			return -EINVAL;
		return decode_ip(be16(f + 14), f + 16, len - 16, out);
	case LT_LINUX_SLL2:
		if (len < 20)
			return -EINVAL;
		return decode_ip(be16(f), f + 20, len - 20, out);
	case LT_NULL:
	case LT_LOOP:
		if (len < 4)
			return -EINVAL;
		return decode_raw(f + 4, len - 4, out);
	case LT_RAW:
	case LT_RAW_OLD:
	case LT_RAW_OLD2:
	case LT_IPV4:
	case LT_IPV6:
		return decode_raw(f, len, out);
	default:
		return -ENOENT;
	}
}

int pcap_input_read(const char *path, pcap_input_cb cb, void *ctx, struct pcap_input_stats *stats,
		    char *err, size_t errlen)
{
	char ebuf[PCAP_ERRBUF_SIZE] = "";
	struct pcap_input_stats st = { 0, 0, 0 };
	struct pcap_pkthdr *h;
	const u_char *data;
	pcap_t *pc;
	int lt, rc, ret = 0;
	bool nano;

	pc = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, ebuf);
	if (!pc) {
		snprintf(err, errlen, "%s", ebuf);
		return -EIO;
	}
	nano = pcap_get_tstamp_precision(pc) == PCAP_TSTAMP_PRECISION_NANO;
	lt = pcap_datalink(pc);
	while ((rc = pcap_next_ex(pc, &h, &data)) == 1) {
		struct pcap_tcp seg;

		st.packets++;
		if (pcap_input_decode(lt, data, h->caplen, &seg)) {
			st.skipped++;
			continue;
		}
		st.tcp++;
		seg.ts_ns = (uint64_t)h->ts.tv_sec * 1000000000u + (uint64_t)h->ts.tv_usec * (nano ? 1u : 1000u);
		ret = cb(ctx, &seg);
		if (ret)
			break;
	}
	if (rc == -1) {
		snprintf(err, errlen, "%s", pcap_geterr(pc));
		ret = -EIO;
	}
	pcap_close(pc);
	if (stats)
		*stats = st;
	return ret;
}
