#!/usr/bin/env python3
"""serial_client.py SERVER COMMAND [COMMAND...]: an SMTP client that talks
one command at a time, as most clients without PIPELINING do: after EHLO,
each COMMAND (CRLF added) in its own TCP segment once the reply to the one
before has arrived. Prints the last line of each reply ("CODE TEXT"), one
per command, and stops at the first "closed" (the connection ended) or
"timeout" (no reply in 10 s). A COMMAND "@wait PATH" sends nothing: it
waits (at most 30 s) until the file PATH exists and prints "waited"."""
import os
import sys
import time

from smtp_connect import connect, reply


def main():
    server, commands = sys.argv[1], sys.argv[2:]
    s, f, _ = connect(server, 10)
    reply(f)
    s.sendall(b"EHLO in.world.test\r\n")
    reply(f)
    for c in commands:
        if c.startswith("@wait "):
            end = time.monotonic() + 30
            while not os.path.exists(c[6:]) and time.monotonic() < end:
                time.sleep(0.05)
            print("waited" if os.path.exists(c[6:]) else "timeout", flush=True)
            continue
        try:
            s.sendall(c.encode() + b"\r\n")
        except OSError:
            print("closed")
            break
        r = reply(f)
        print(r, flush=True)
        if r in ("closed", "timeout"):
            break
    s.close()


if __name__ == "__main__":
    main()
