#!/usr/bin/env python3
"""reuse_isn.py SERVER FIRST SECOND: two SMTP sessions to SERVER:25 (IPv4)
from the same address and port that begin with the same initial sequence
number, as a client that reuses both would.

The first says EHLO, MAIL FROM:<FIRST>, RCPT TO:<user@plain.test> and
QUIT, waits 1.5 s (the gateway offloads a plaintext flow at QUIT: its
close then passes in the kernel) and is closed with a RST (the server
keeps no TIME_WAIT, so the addresses are free at once). The second, with
the first's port and initial sequence number, says EHLO and
MAIL FROM:<SECOND>, and if that is accepted, RCPT TO, DATA and a message.
Prints "port PORT isn ISN", then each session's replies after EHLO on one
line ("CODE TEXT|..."; "closed" or "timeout" where one ended).

The handshake is played on raw sockets with the chosen sequence number;
the connection is then handed to the kernel as an established socket
(TCP_REPAIR), which carries the dialog. While it runs, an iptables rule in
this namespace drops the kernel's resets without ACK from that port (its
answer to the server's SYN-ACK and first data before the socket exists).
Needs CAP_NET_ADMIN and CAP_NET_RAW.
"""
import os
import random
import socket
import struct
import subprocess
import sys
import time

from smtp_connect import reply
from wire_attack import segment

TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
SYN, RST, ACK = 0x02, 0x04, 0x10


def handshake(local, port, server, isn):
    """SYN with sequence number isn, the server's SYN-ACK, our ACK; returns
    the server's initial sequence number."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tap = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    tap.settimeout(1)
    for _ in range(5):
        raw.sendto(segment(local, port, server, 25, isn, 0, SYN, b""), (server, 0))
        end = time.time() + 1
        while time.time() < end:
            try:
                pkt = tap.recv(65536)
            except socket.timeout:
                break
            tcp = pkt[(pkt[0] & 15) * 4:]
            sport, dport, seq, ack, _, flags = struct.unpack("!HHIIBB", tcp[:14])
            if pkt[12:16] == socket.inet_aton(server) and sport == 25 and dport == port and \
                    flags & (SYN | ACK) == SYN | ACK and ack == (isn + 1) & 0xFFFFFFFF:
                raw.sendto(segment(local, port, server, 25, ack, (seq + 1) & 0xFFFFFFFF, ACK,
                                   b""), (server, 0))
                return seq
    raise OSError("no SYN-ACK from %s" % server)


def connect_with_isn(local, port, server, isn):
    """An established socket from local:port whose first byte is isn + 1."""
    server_isn = handshake(local, port, server, isn)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((local, port))
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
    s.setsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, struct.pack("I", (isn + 1) & 0xFFFFFFFF))
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
    s.setsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ,
                 struct.pack("I", (server_isn + 1) & 0xFFFFFFFF))
    s.connect((server, 25))  # in repair mode: established, nothing sent
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(10)
    return s


def session(local, port, server, isn, commands):
    """Greeting, EHLO, then each command while the replies are 2xx/3xx;
    closed with a RST. Returns the replies after EHLO's."""
    s = connect_with_isn(local, port, server, isn)
    f = s.makefile("rb")
    out = []
    reply(f)
    s.sendall(b"EHLO in.world.test\r\n")
    reply(f)
    for c in commands:
        if c is None:  # a pause: the gateway offloads at the QUIT's copy
            time.sleep(1.5)
            continue
        s.sendall(c)
        r = reply(f)
        out.append(r)
        if r[:1] not in ("2", "3"):
            break
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    return out


def main():
    server, first, second = sys.argv[1:4]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((server, 25))
    local = probe.getsockname()[0]
    probe.close()
    free = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    free.bind((local, 0))
    port = free.getsockname()[1]
    free.close()
    isn = random.getrandbits(32)
    print("port %d isn %d" % (port, isn), flush=True)
    rule = ["OUTPUT", "-p", "tcp", "-s", local, "--sport", str(port), "-d", server,
            "--tcp-flags", "RST,ACK", "RST", "-j", "DROP"]
    subprocess.run(["iptables", "-I"] + rule, check=True)
    try:
        rcpt = b"RCPT TO:<user@plain.test>\r\n"
        out = session(local, port, server, isn,
                      [b"MAIL FROM:<%s>\r\n" % first.encode(), rcpt, b"QUIT\r\n", None])
        print("|".join(out), flush=True)
        time.sleep(0.5)
        msg = b"Subject: reused ISN\r\n\r\nsecure-mode mail on a reused connection\r\n.\r\n"
        out = session(local, port, server, isn,
                      [b"MAIL FROM:<%s>\r\n" % second.encode(), rcpt, b"DATA\r\n", msg,
                       b"QUIT\r\n"])
        print("|".join(out), flush=True)
    finally:
        subprocess.run(["iptables", "-D"] + rule, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
