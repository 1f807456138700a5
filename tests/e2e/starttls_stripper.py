#!/usr/bin/python3
"""A STARTTLS-stripping man in the middle, for the end-to-end tests only.

Usage: starttls_stripper.py LISTEN_ADDR LISTEN_PORT SERVER_ADDR SERVER_PORT

Accepts SMTP connections and relays each to the server, except that
  - "STARTTLS" is removed from the server's EHLO reply (continuation
    markers fixed, so the reply stays well formed), and
  - a STARTTLS command sent anyway is answered "502 5.5.1" by the proxy
    itself and never reaches the server.
Everything else is relayed byte for byte. With STRIPPER_PREFIX set (Python
string escapes, e.g. "X\\r\\n"), those bytes reach the client first, ahead
of the server's greeting: junk that real SMTP clients skip or not. This is what an active attacker
on the path does to make an opportunistic sender fall back to plaintext.
Runs until killed; prints "ready" on stdout once listening and one line per
stripped reply or refused STARTTLS on stderr.
"""
import asyncio
import os
import socket
import sys


def log(msg):
    print(msg, file=sys.stderr, flush=True)


async def server_to_client(sr, cw):
    """Relay replies; strip STARTTLS out of multi-line 250 replies."""
    reply = []
    while True:
        line = await sr.readline()
        if not line:
            break
        if not line[:3].isdigit():
            cw.write(line)  # not SMTP any more (or never was): pass it on
            await cw.drain()
            continue
        reply.append(line)
        if line[3:4] == b"-":
            continue  # more lines of this reply follow
        if reply[0][:3] == b"250" and len(reply) > 1:
            kept = [l for l in reply if l[4:].strip().upper() != b"STARTTLS"]
            if len(kept) != len(reply):
                log("stripped STARTTLS from the EHLO reply")
                kept = [l[:3] + b"-" + l[4:] for l in kept[:-1]] + [kept[-1][:3] + b" " + kept[-1][4:]]
            reply = kept
        cw.write(b"".join(reply))
        await cw.drain()
        reply = []


async def client_to_server(cr, sw, cw):
    """Relay commands; answer STARTTLS ourselves."""
    in_data = False
    while True:
        line = await cr.readline()
        if not line:
            break
        cmd = line.strip().upper()
        if not in_data and cmd == b"STARTTLS":
            log("refused STARTTLS")
            cw.write(b"502 5.5.1 Error: command not recognized\r\n")
            await cw.drain()
            continue
        # Message content is not commands; the end of DATA is "." alone.
        if not in_data and cmd == b"DATA":
            in_data = True
        elif in_data and line in (b".\r\n", b".\n"):
            in_data = False
        sw.write(line)
        await sw.drain()


async def handle(cr, cw, server):
    prefix = os.environ.get("STRIPPER_PREFIX", "")
    if prefix:
        cw.write(prefix.encode().decode("unicode_escape").encode("latin-1"))
        await cw.drain()
    try:
        sr, sw = await asyncio.open_connection(*server)
    except OSError as e:
        log(f"cannot reach the server: {e}")
        cw.close()
        return
    tasks = [asyncio.ensure_future(server_to_client(sr, cw)),
             asyncio.ensure_future(client_to_server(cr, sw, cw))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, OSError):
        pass
    for t in tasks:
        t.cancel()
    for w in (cw, sw):
        try:
            w.close()
        except OSError:
            pass


async def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    laddr, lport, saddr, sport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    family = socket.AF_INET6 if ":" in laddr else socket.AF_INET
    srv = await asyncio.start_server(lambda r, w: handle(r, w, (saddr, sport)),
                                     laddr, lport, family=family, reuse_address=True)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
