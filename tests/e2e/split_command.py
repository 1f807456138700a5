#!/usr/bin/env python3
"""split_command.py SERVER PART [PART...]: an SMTP client that says EHLO,
then sends each PART in its own TCP segment (TCP_NODELAY, SPLIT_DELAY
seconds apart: 0.3 unless set), and
prints the server's reply to the last command the parts make up ("CODE
TEXT"). Parts are Python string literals' escapes decoded (\\r\\n)."""
import os
import sys
import time

from smtp_connect import connect, reply


def main():
    server, parts = sys.argv[1], sys.argv[2:]
    s, f, _ = connect(server, 20)
    reply(f)
    s.sendall(b"EHLO in.world.test\r\n")
    reply(f)
    data = [p.encode().decode("unicode_escape").encode("latin-1") for p in parts]
    for i, p in enumerate(data):
        if i:
            time.sleep(float(os.environ.get("SPLIT_DELAY", "0.3")))
        s.sendall(p)
    last = ""
    for _ in range(b"".join(data).count(b"\n")):
        last = reply(f)
    print(last)
    try:
        s.sendall(b"QUIT\r\n")
        reply(f)
    except OSError:
        pass


if __name__ == "__main__":
    main()
