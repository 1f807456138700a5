#!/usr/bin/env python3
"""wire_attack.py MODE SERVER FROM [MSGID]: an SMTP client (IPv4 or IPv6, as
SERVER is) that sends
MAIL FROM:<FROM> to SERVER through the gateway while playing one of the
on-path tricks of issue 17 on its own connection, then prints the reply
to MAIL FROM ("CODE TEXT", "closed" or "timeout") and, if that was 250,
the reply to RCPT TO:<user@plain.test>.

MODE:
  badsum  before the real MAIL FROM, a decoy MAIL FROM:<decoy@example.com>
          at the same sequence number with a wrong TCP checksum (the
          server's stack drops it; a gateway that believes it judges the
          decoy, or sees a conflicting overlap)
  urgent  MAIL FROM:<FROM> with one byte sent as TCP urgent data
          (MSG_OOB) in the domain: Linux takes it out of the stream, other
          stacks keep it
  rst     MAIL FROM in two segments, between them a reset with a sequence
          number one past the right one (RFC 5961: the server ignores it
          and reads the whole line)
  quitsum a decoy QUIT with a wrong TCP checksum right after the EHLO
          reply, at the client's next sequence number: a line the tagger
          passes itself and copies to the daemon (docs/datapath.md), which
          the server's stack drops. A gateway that believes it takes the
          dialog as ended and offloads the flow. Then, with MSGID (the 4th
          argument), one whole transaction per sender in FROM (comma
          separated: MAIL, RCPT TO:<user@plain.test>, DATA and a message
          whose Message-ID is <LOCAL.MSGID>, LOCAL the sender's local
          part), each reply printed as "VERB REPLY", until one is not the
          expected 250 or 354.
  ahead   one byte far beyond the stream (AHEAD bytes past the client's
          next sequence number, default 100000: outside the server's
          window and the gateway's reassembly window), then the real
          MAIL FROM
  ooo     17 one-byte pieces of MAIL FROM:<FROM>, each at its own offset
          with a one-byte hole before it (17 out-of-order islands, one
          more than the gateway's reassembly keeps), then the whole line:
          the server reads the line once
  frag    MAIL FROM:<FROM> in one TCP segment carried in two IPv4 or IPv6
          fragments (the first with the TCP header and 4 bytes), then,
          after FRAG_WAIT seconds (default 1), the same line at the same
          sequence number from the socket (a retransmission to a server
          that reassembled the fragments); prints the reply to the
          fragments, "timeout" when none came before the socket's copy,
          then the reply to the line (RESEND=0: not the line; what the
          server read came from the fragments alone)
  ext     (IPv6) MAIL FROM:<FROM> in one TCP segment behind EXT (default
          7) Destination Options headers, one more than the gateway's
          tagger follows (Linux follows any number), then as frag

The crafted segments are sent on a raw socket (IP_HDRINCL) from this
namespace, with the connection's sequence and acknowledgement numbers read
from an AF_PACKET capture of its own interface (IFACE, default eth0).
"""
import os
import select
import socket
import struct
import sys
import time

from smtp_connect import connect, reply

ETH_P_ALL = 0x0003


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def is_v6(addr):
    return ":" in addr


def addr_bytes(addr):
    return socket.inet_pton(socket.AF_INET6 if is_v6(addr) else socket.AF_INET, addr)


def tcp_segment(src, sport, dst, dport, seq, ack, flags, payload, bad_sum=False):
    """The TCP header and payload, with its checksum (wrong if bad_sum)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 502, 0, 0) + payload
    if is_v6(src):
        pseudo = addr_bytes(src) + addr_bytes(dst) + struct.pack("!IxxxB", len(tcp), 6)
    else:
        pseudo = addr_bytes(src) + addr_bytes(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    s = csum(pseudo + tcp)
    if bad_sum:
        s ^= 0x5A5A
    return tcp[:16] + struct.pack("!H", s) + tcp[18:]


def ip_header(src, dst, length, ident=0x1234, frag=0x4000):
    """An IPv4 header for TCP; frag is the flags and offset field."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, ident, frag, 64, 6, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))


def ip6_header(src, dst, length, next_header):
    """An IPv6 header; length is what follows it."""
    return struct.pack("!IHBB16s16s", 0x60000000, length, next_header, 64, addr_bytes(src),
                       addr_bytes(dst))


def segment(src, sport, dst, dport, seq, ack, flags, payload, bad_sum=False):
    tcp = tcp_segment(src, sport, dst, dport, seq, ack, flags, payload, bad_sum)
    if is_v6(src):
        return ip6_header(src, dst, len(tcp), 6) + tcp
    return ip_header(src, dst, len(tcp)) + tcp


def fragments(src, sport, dst, dport, seq, ack, payload, first=24):
    """One TCP segment as two IPv4 or IPv6 fragments: the first `first`
    bytes (a multiple of 8) with More Fragments, then the rest at that
    offset."""
    tcp = tcp_segment(src, sport, dst, dport, seq, ack, 0x18, payload)
    if is_v6(src):
        ident = 0x40000000 | sport
        return [ip6_header(src, dst, 8 + first, 44) + struct.pack("!BBHI", 6, 0, 1, ident) +
                tcp[:first],
                ip6_header(src, dst, 8 + len(tcp) - first, 44) +
                struct.pack("!BBHI", 6, 0, (first // 8) << 3, ident) + tcp[first:]]
    ident = 0x4000 | (sport & 0x3FFF)
    return [ip_header(src, dst, first, ident, 0x2000) + tcp[:first],
            ip_header(src, dst, len(tcp) - first, ident, first // 8) + tcp[first:]]


def ext_chain(src, sport, dst, dport, seq, ack, payload, n):
    """One TCP segment behind n IPv6 Destination Options headers, each 8
    bytes holding one PadN option."""
    tcp = tcp_segment(src, sport, dst, dport, seq, ack, 0x18, payload)
    hdrs = b"".join(struct.pack("!BBBB4x", 60 if i < n - 1 else 6, 0, 1, 4) for i in range(n))
    return ip6_header(src, dst, len(hdrs) + len(tcp), 60 if n else 6) + hdrs + tcp


class Tap:
    """The connection's own segments, from a capture of the interface."""

    def __init__(self, iface):
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.s.bind((iface, 0))
        self.s.setblocking(False)
        self.next_seq = self.ack = None

    def follow(self, local, lport, remote):
        """Reads what was captured: our next sequence number (after the
        data we sent) and the last acknowledgement we sent."""
        while True:
            try:
                frame, addr = self.s.recvfrom(65536)
            except BlockingIOError:
                return
            ip = frame[14:]
            if frame[12:14] == b"\x08\x00" and len(ip) >= 40:
                ihl = (ip[0] & 15) * 4
                if ip[9] != 6 or ip[12:16] != addr_bytes(local) or \
                        ip[16:20] != addr_bytes(remote):
                    continue
                length = struct.unpack("!H", ip[2:4])[0] - ihl
            elif frame[12:14] == b"\x86\xdd" and len(ip) >= 60:
                ihl = 40  # our own segments: no extension header
                if ip[6] != 6 or ip[8:24] != addr_bytes(local) or \
                        ip[24:40] != addr_bytes(remote):
                    continue
                length = struct.unpack("!H", ip[4:6])[0]
            else:
                continue
            tcp = ip[ihl:]
            sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
            if sport != lport:
                continue
            plen = length - (off >> 4) * 4
            end = (seq + plen + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
            if self.next_seq is None or ((end - self.next_seq) & 0xFFFFFFFF) < 0x80000000:
                self.next_seq = end
            self.ack = ack


def transactions(s, f, senders, msgid):
    """The quitsum dialog after the decoy (see the module's comment)."""
    for sender in senders.split(","):
        local = sender.split("@")[0]
        message = ("From: %s\r\nTo: user@plain.test\r\nSubject: after a decoy QUIT\r\n"
                   "Message-ID: <%s.%s>\r\n\r\nSent after a decoy QUIT.\r\n.\r\n" %
                   (sender, local, msgid)).encode()
        steps = (("MAIL", b"MAIL FROM:<%s>\r\n" % sender.encode(), "250"),
                 ("RCPT", b"RCPT TO:<user@plain.test>\r\n", "250"),
                 ("DATA", b"DATA\r\n", "354"),
                 ("END", message, "250"))
        for verb, line, want in steps:
            try:
                s.sendall(line)
            except OSError:
                print(verb + " closed")
                return
            r = reply(f)
            print(verb + " " + r)
            if not r.startswith(want):
                return
    try:
        s.sendall(b"QUIT\r\n")
        print("QUIT " + reply(f))
    except OSError:
        print("QUIT closed")


def main():
    mode, server, sender = sys.argv[1:4]
    tap = Tap(os.environ.get("IFACE", "eth0"))
    s, f, _ = connect(server, 15)
    local, lport = s.getsockname()[:2]
    # IPPROTO_RAW: the header is ours (IP_HDRINCL; implied for IPv6 too)
    raw = socket.socket(socket.AF_INET6 if is_v6(server) else socket.AF_INET, socket.SOCK_RAW,
                        socket.IPPROTO_RAW)
    reply(f)
    s.sendall(b"EHLO in.world.test\r\n")
    reply(f)
    time.sleep(0.3)  # our ACK of the EHLO reply has left
    tap.follow(local, lport, server)
    if tap.next_seq is None:
        print("no capture")
        return 1
    mail = b"MAIL FROM:<%s>\r\n" % sender.encode()
    if mode == "ooo" and len(mail) < 35:
        print("ooo needs a longer sender")
        return 2
    try:
        return attack(mode, s, f, raw, tap, local, lport, server, sender, mail)
    except OSError:  # a reset: the gateway blocked the flow
        print("closed")
        return 0


def attack(mode, s, f, raw, tap, local, lport, server, sender, mail):
    """The trick, then the replies (see the module's comment)."""
    if mode == "badsum":
        decoy = b"MAIL FROM:<decoy@example.com>\r\n"
        raw.sendto(segment(local, lport, server, 25, tap.next_seq, tap.ack, 0x18, decoy, True),
                   (server, 0))
        time.sleep(0.3)
        s.sendall(mail)
    elif mode == "urgent":
        at = mail.index(b"@") + 4
        s.sendall(mail[:at])
        time.sleep(0.1)
        s.send(b"X", socket.MSG_OOB)
        time.sleep(0.1)
        s.sendall(mail[at:])
    elif mode == "rst":
        half = mail.index(b"@") + 3
        s.sendall(mail[:half])
        time.sleep(0.3)
        tap.follow(local, lport, server)
        raw.sendto(segment(local, lport, server, 25, (tap.next_seq + 1) & 0xFFFFFFFF, tap.ack,
                           0x04, b""), (server, 0))
        time.sleep(0.3)
        s.sendall(mail[half:])
    elif mode == "ahead":
        far = (tap.next_seq + int(os.environ.get("AHEAD", "100000"))) & 0xFFFFFFFF
        raw.sendto(segment(local, lport, server, 25, far, tap.ack, 0x18, b"X"), (server, 0))
        time.sleep(0.3)
        s.sendall(mail)
    elif mode == "ooo":
        for off in range(1, 35, 2):  # 17 islands, a hole before each
            raw.sendto(segment(local, lport, server, 25, (tap.next_seq + off) & 0xFFFFFFFF,
                               tap.ack, 0x18, mail[off:off + 1]), (server, 0))
            time.sleep(0.01)
        time.sleep(0.3)
        s.sendall(mail)
    elif mode in ("frag", "ext"):
        if mode == "frag":
            packets = fragments(local, lport, server, 25, tap.next_seq, tap.ack, mail)
        elif is_v6(server):
            packets = [ext_chain(local, lport, server, 25, tap.next_seq, tap.ack, mail,
                                 int(os.environ.get("EXT", "7")))]
        else:
            print("ext needs an IPv6 server")
            return 2
        for packet in packets:
            raw.sendto(packet, (server, 0))
        # (a timed-out read would end the file object: select instead)
        if select.select([s], [], [], float(os.environ.get("FRAG_WAIT", "1")))[0]:
            print(reply(f))
        else:
            print("timeout")
        if os.environ.get("RESEND") == "0":  # what the server read came from them alone
            s.close()
            return 0
        s.sendall(mail)
    elif mode == "quitsum":
        raw.sendto(segment(local, lport, server, 25, tap.next_seq, tap.ack, 0x18, b"QUIT\r\n",
                           True), (server, 0))
        time.sleep(0.3)
        transactions(s, f, sender, sys.argv[4])
        s.close()
        return 0
    else:
        print("unknown mode " + mode)
        return 2
    r = reply(f)
    print(r)
    if r.startswith("250"):
        try:
            s.sendall(b"RCPT TO:<user@plain.test>\r\n")
            print(reply(f))
            s.sendall(b"QUIT\r\n")
        except OSError:
            print("closed")
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
