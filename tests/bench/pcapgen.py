#!/usr/bin/env python3
"""Writes a synthetic capture of many port-25 SMTP sessions, for the replay
benchmark (tests/bench/replay_bench.sh).

Usage: pcapgen.py OUT.pcap SESSIONS CERT.der [CERT.der ...]

Sessions rotate through four kinds, as the test world has them:
  plain     greeting, EHLO (multi-line reply), MAIL, RCPT, DATA with a body
            of a few KiB, QUIT, FIN both ways;
  tls12     STARTTLS, TLS 1.2 ClientHello (SNI on every other one),
            ServerHello ECDHE-ECDSA-AES256-GCM-SHA384, Certificate (the
            given DER chain), ServerKeyExchange, ServerHelloDone, client
            key exchange, CCS and Finished both ways, then encrypted
            records (the rest of the dialog) and a RST as Postfix ends;
  tls13     STARTTLS, TLS 1.3 ClientHello/ServerHello (TLS_AES_256_GCM_SHA384
            via supported_versions), CCS, encrypted flight, encrypted dialog;
  refused   STARTTLS answered 454, then the plaintext transaction.
Half of the sessions are IPv6. Addresses: clients 192.0.2.0/24 and
2001:db8:1::/64, servers 198.51.100.0/24 and 2001:db8:2::/64. Segments are
at most 1448 bytes, every data segment is ACKed, and 64 sessions run
interleaved. The handshake messages are well-formed; the key material
and the encrypted records are random bytes.

Prints a JSON summary on stdout: sessions per kind, packets, payload bytes
(total, and "dialog_handshake": SMTP lines plus TLS handshake records up to
both Finished messages, i.e. what the engine must parse; message content
and encrypted records are the rest), and the SHA-256 of the leaf
certificate, so the caller can check the replay's summaries.
"""
import array
import hashlib
import json
import os
import random
import struct
import sys

MSS = 1448
rng = random.Random(25)


def rnd(n):
    return rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(array.array("H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return struct.pack("=H", ~s & 0xFFFF)


class Writer:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.packets = 0

    def packet(self, frame):
        # 20 us apart, in file order.
        usec = 1700000000 * 1000000 + 20 * self.packets
        self.f.write(struct.pack("<IIII", usec // 1000000, usec % 1000000, len(frame), len(frame)))
        self.f.write(frame)
        self.packets += 1


def frame(v6, src, dst, sport, dport, seq, ack, flags, payload):
    ack = ack if flags & 0x10 else 0
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535 if flags & 0x02 else 502, 0, 0)
    seg = tcp + payload
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
        seg = seg[:16] + csum(pseudo + seg) + seg[18:]
        ip = struct.pack("!IHBB", 6 << 28, len(seg), 6, 64) + src + dst
        eth = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x86\xdd"
    else:
        pseudo = src + dst + struct.pack("!xBH", 6, len(seg))
        seg = seg[:16] + csum(pseudo + seg) + seg[18:]
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0) + src + dst
        ip = ip[:10] + csum(ip) + ip[12:]
        eth = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"
    return eth + ip + seg


# --- TLS messages -----------------------------------------------------------

def u8(n):
    return struct.pack("!B", n)


def u16(n):
    return struct.pack("!H", n)


def u24(n):
    return struct.pack("!I", n)[1:]


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def vec24(b):
    return u24(len(b)) + b


def ext(t, body):
    return u16(t) + vec16(body)


def hs(t, body):
    return u8(t) + vec24(body)


def record(t, body, version=0x0303):
    out = b""
    for i in range(0, max(len(body), 1), 16384):
        out += u8(t) + u16(version) + vec16(body[i:i + 16384])
    return out


def client_hello(sni, tls13):
    exts = b""
    if sni:
        exts += ext(0, vec16(u8(0) + vec16(sni.encode())))
    exts += ext(10, vec16(u16(0x001D) + u16(0x0017) + u16(0x0018)))   # supported_groups
    exts += ext(11, vec8(u8(0)))                                       # ec_point_formats
    exts += ext(13, vec16(u16(0x0403) + u16(0x0804) + u16(0x0401)))   # signature_algorithms
    exts += ext(23, b"") + ext(0xFF01, vec8(b""))                      # ems, renegotiation_info
    suites = [0x1302, 0x1303, 0x1301] if tls13 else []
    suites += [0xC02C, 0xC030, 0xC02B, 0xC02F, 0x009F, 0x009E]
    if tls13:
        exts += ext(43, vec8(u16(0x0304) + u16(0x0303)))               # supported_versions
        exts += ext(51, vec16(u16(0x001D) + vec16(rnd(32))))           # key_share x25519
        exts += ext(45, vec8(u8(1)))                                   # psk_key_exchange_modes
    body = u16(0x0303) + rnd(32) + vec8(rnd(32) if tls13 else b"")
    body += vec16(b"".join(u16(s) for s in suites)) + vec8(u8(0)) + vec16(exts)
    return record(22, hs(1, body), 0x0301)


def server_hello(tls13):
    if tls13:
        exts = ext(43, u16(0x0304)) + ext(51, u16(0x001D) + vec16(rnd(32)))
        body = u16(0x0303) + rnd(32) + vec8(rnd(32)) + u16(0x1302) + u8(0) + vec16(exts)
    else:
        exts = ext(0xFF01, vec8(b"")) + ext(11, vec8(u8(0))) + ext(23, b"")
        body = u16(0x0303) + rnd(32) + vec8(rnd(32)) + u16(0xC02C) + u8(0) + vec16(exts)
    return hs(2, body)


def tls12_flights(sni, chain):
    ch = client_hello(sni, False)
    ske = hs(12, u8(3) + u16(0x0017) + vec8(b"\x04" + rnd(64)) + u16(0x0403) + vec16(rnd(71)))
    cert = hs(11, vec24(b"".join(vec24(c) for c in chain)))
    srv1 = record(22, server_hello(False) + cert + ske + hs(14, b""))
    cli2 = (record(22, hs(16, vec8(b"\x04" + rnd(64)))) + record(20, b"\x01") +
            record(22, rnd(40)))                      # Finished, encrypted
    srv2 = record(20, b"\x01") + record(22, rnd(40))
    return ch, srv1, cli2, srv2


def tls13_flights(sni):
    ch = client_hello(sni, True)
    srv1 = record(22, server_hello(True)) + record(20, b"\x01") + record(23, rnd(2100))
    cli2 = record(20, b"\x01") + record(23, rnd(74))
    return ch, srv1, cli2, b""


# --- SMTP sessions -------------------------------------------------------------

EHLO_REPLY = ("250-mx.bench.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-VRFY\r\n"
              "250-ETRN\r\n%s250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
              "250 CHUNKING\r\n")


def body_lines(n):
    import base64
    raw = base64.b64encode(rnd(n * 3 // 4)).decode()
    return "".join(raw[i:i + 76] + "\r\n" for i in range(0, len(raw), 76))


def envelope(k):
    """(dialog steps, content bytes): a pipelined transaction, as Postfix sends it."""
    body = ("From: sender@in.bench.test\r\nTo: user%d@bench.test\r\nSubject: bench %d\r\n"
            "Message-ID: <bench-%d@in.bench.test>\r\n\r\n" % (k, k, k)) + body_lines(2048)
    return [
        ("c", "MAIL FROM:<sender@in.bench.test> SIZE=%d\r\nRCPT TO:<user%d@bench.test> "
              "ORCPT=rfc822;user%d@bench.test\r\nDATA\r\n" % (len(body), k, k), True),
        ("s", "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n", True),
        ("c", body, False),
        ("c", ".\r\n", True),
        ("c", "QUIT\r\n", True),
        ("s", "250 2.0.0 Ok: queued as %05X\r\n221 2.0.0 Bye\r\n" % k, True),
    ]


def session_steps(kind, k, chain):
    """[(dir, bytes, counts_as_dialog_or_handshake)] and how the session ends."""
    offer = "250-STARTTLS\r\n" if kind != "plain" else ""
    steps = [("s", "220 mx.bench.test ESMTP Postfix\r\n", True),
             ("c", "EHLO in.bench.test\r\n", True),
             ("s", EHLO_REPLY % offer, True)]
    if kind == "plain":
        return steps + envelope(k), "fin"
    if kind == "refused":
        steps += [("c", "STARTTLS\r\n", True),
                  ("s", "454 4.7.0 TLS not available due to local problem\r\n", True)]
        return steps + envelope(k), "fin"
    steps += [("c", "STARTTLS\r\n", True), ("s", "220 2.0.0 Ready to start TLS\r\n", True)]
    sni = "mx%d.bench.test" % (k % 100) if k % 2 else None
    if kind == "tls12":
        ch, s1, c2, s2 = tls12_flights(sni, chain)
    else:
        ch, s1, c2, s2 = tls13_flights(sni)
    steps += [("c", ch, True), ("s", s1, True), ("c", c2, True)]
    if s2:
        steps.append(("s", s2, True))
    # The rest of the dialog, encrypted: EHLO, reply, envelope, content, QUIT.
    for d, n in (("c", 40), ("s", 230), ("c", 170), ("s", 110), ("c", 2900), ("s", 70), ("c", 30)):
        steps.append((d, record(23, rnd(n)), False))
    return steps, "rst"


def packets_of(k, kind, chain):
    v6 = k % 2 == 1
    if v6:
        cli = bytes.fromhex("20010db8000100000000000000000000")[:14] + struct.pack("!H", 0x10 + k % 200)
        srv = bytes.fromhex("20010db8000200000000000000000000")[:14] + struct.pack("!H", 0x20 + k % 50)
    else:
        cli = bytes([192, 0, 2, 10 + k % 200])
        srv = bytes([198, 51, 100, 20 + k % 50])
    cport = 1024 + (k * 7) % 60000
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    out = []

    def emit(to_server, flags, payload=b""):
        if to_server:
            out.append(frame(v6, cli, srv, cport, 25, cseq, sseq, flags, payload))
        else:
            out.append(frame(v6, srv, cli, 25, cport, sseq, cseq, flags, payload))

    emit(True, 0x02)
    cseq += 1
    emit(False, 0x12)
    sseq += 1
    emit(True, 0x10)
    steps, end = session_steps(kind, k, chain)
    counted = total = 0
    for d, data, dialog in steps:
        data = data.encode() if isinstance(data, str) else data
        total += len(data)
        counted += len(data) if dialog else 0
        for i in range(0, len(data), MSS):
            chunk = data[i:i + MSS]
            if d == "c":
                emit(True, 0x18, chunk)
                cseq += len(chunk)
                emit(False, 0x10)
            else:
                emit(False, 0x18, chunk)
                sseq += len(chunk)
                emit(True, 0x10)
    if end == "fin":
        emit(False, 0x11)
        sseq += 1
        emit(True, 0x11)
        cseq += 1
        emit(False, 0x10)
    else:
        emit(True, 0x11)
        cseq += 1
        emit(False, 0x18, record(23, rnd(19)))
        emit(True, 0x04)
    return out, counted, total


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    chain = []
    for p in sys.argv[3:]:
        with open(p, "rb") as f:
            chain.append(f.read())
    kinds = ["plain", "tls12", "tls13", "refused"]
    w = Writer(path)
    summary = {"sessions": n, "kinds": {k: 0 for k in kinds}, "payload_bytes": 0,
               "dialog_handshake_bytes": 0, "leaf_sha256": hashlib.sha256(chain[0]).hexdigest()}
    live = []
    k = 0
    # 64 sessions at a time, their packets interleaved round-robin.
    while k < n or live:
        while k < n and len(live) < 64:
            kind = kinds[k % 4]
            pk, counted, total = packets_of(k, kind, chain)
            summary["kinds"][kind] += 1
            summary["payload_bytes"] += total
            summary["dialog_handshake_bytes"] += counted
            live.append(pk)
            k += 1
        for pk in live:
            w.packet(pk.pop(0))
        live = [pk for pk in live if pk]
    summary["packets"] = w.packets
    w.f.close()
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
