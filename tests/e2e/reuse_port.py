#!/usr/bin/env python3
"""reuse_port.py SERVER FIRST_SENDER SECOND_SENDER: two SMTP sessions to
SERVER:25 from the same source address and port. The first says EHLO,
MAIL FROM:<FIRST_SENDER> and QUIT, waits 1.5 s, and is closed with a RST (no TIME_WAIT
on either side, so the port is free at once); the second says EHLO and
MAIL FROM:<SECOND_SENDER>. Prints the two MAIL FROM replies, one line
each ("CODE TEXT")."""
import socket
import struct
import sys
import time

from split_command import reply


def session(server, family, port, sender, quit):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(20)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.connect((server, 25))
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO in.world.test\r\n")
    reply(f)
    s.sendall(b"MAIL FROM:<%s>\r\n" % sender.encode())
    out = reply(f)
    if quit:
        s.sendall(b"QUIT\r\n")
        reply(f)
        # the daemon reads the QUIT (a copy) within its 1 s tick and
        # offloads the flow: the RST then passes on the PASS entry
        time.sleep(1.5)
    port = s.getsockname()[1]
    # linger 0: close() sends a RST
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    return out, port


def main():
    server, first, second = sys.argv[1:4]
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    out, port = session(server, family, 0, first, True)
    print(out, flush=True)
    time.sleep(0.5)
    out, _ = session(server, family, port, second, False)
    print(out, flush=True)


if __name__ == "__main__":
    main()
