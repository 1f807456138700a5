#!/usr/bin/env python3
"""stale_ack.py SERVER FIRST SECOND: an SMTP client whose second command
acknowledges less than the gateway has seen of the server.

After EHLO it queues UDP datagrams to SERVER's discard port on its own
egress (the caller has put a rate-limiting tbf qdisc on the interface),
then FIRST, more datagrams, then SECOND, all at once. SECOND's segment is
built before FIRST has even left, so it acknowledges nothing of FIRST's
reply; it leaves after the second backlog, when that reply has passed the
gateway and reached the client. Prints every reply line after EHLO's as
it arrives, then "closed" or "timeout", one per line. The commands are
Python string literals' escapes decoded (\\r\\n). $STALE_BACKLOG: UDP bytes
queued before FIRST (default 5000) and four times that before SECOND.
"""
import os
import socket
import sys

from smtp_connect import connect


def main():
    server, first, second = sys.argv[1:4]
    first, second = (p.encode().decode("unicode_escape").encode("latin-1")
                     for p in (first, second))
    s, f, family = connect(server, 10)
    out = []

    def replies(n=None):
        """Reply lines until one ends a reply (n=1) or the stream ends."""
        try:
            while True:
                line = f.readline()
                if not line:
                    out.append("closed")
                    return
                text = line.decode(errors="replace").rstrip("\r\n")
                out.append(text)
                if n and line[3:4] != b"-":
                    return
        except OSError:
            out.append("timeout")

    replies(1)
    s.sendall(b"EHLO in.world.test\r\n")
    replies(1)
    del out[:]
    u = socket.socket(family, socket.SOCK_DGRAM)
    backlog = int(os.environ.get("STALE_BACKLOG", "5000"))

    def queue_udp(n):
        for _ in range(n // 1000):
            u.sendto(b"x" * 1000, (server, 9))

    queue_udp(backlog)
    s.sendall(first)
    queue_udp(4 * backlog)
    s.sendall(second)
    replies()
    print("\n".join(out))


if __name__ == "__main__":
    main()
