#!/usr/bin/env python3
"""Benchmark helper run inside the sending namespace.

  flowtool.py connect HOST PORT N      TCP connect+close N times; prints the
                                        median and p90 connect time in us
  flowtool.py bulk HOST PORT FILE        one STARTTLS session delivering FILE
                                        (an RFC 5322 message); prints seconds
  flowtool.py serve HOST PORT            a minimal SMTP responder (asyncio) that
                                        holds any number of sessions
  flowtool.py hold HOST PORT N SECS    open N SMTP sessions (read banner, EHLO)
                                        and hold them SECS seconds; prints
                                        "held N" once all are open
"""
import smtplib
import socket
import ssl
import statistics
import sys
import time


def connect(host, port, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s = socket.create_connection((host, port), timeout=5)
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
        s.close()
    samples.sort()
    print("median_us %.1f p90_us %.1f n %d" % (
        statistics.median(samples), samples[int(len(samples) * 0.9)], n))


def hold(host, port, n, secs):
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.recv(4096)  # banner
        s.sendall(b"EHLO bench.world.test\r\n")
        s.recv(4096)
        socks.append(s)
    print("held %d" % len(socks), flush=True)
    time.sleep(secs)
    for s in socks:
        s.close()


def bulk(host, port, path):
    with open(path, "rb") as f:
        data = f.read()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # opportunistic, as MTAs do
    t0 = time.perf_counter()
    with smtplib.SMTP(host, port, "in.world.test", timeout=120) as s:
        s.starttls(context=ctx)
        s.ehlo("in.world.test")
        s.sendmail("sender@in.world.test", ["user@tls.test"], data)
    print("%.3f" % (time.perf_counter() - t0))


def serve(host, port):
    import asyncio

    async def session(reader, writer):
        writer.write(b"220 flowtool ESMTP\r\n")
        while True:
            line = await reader.readline()
            if not line:
                break
            if line[:4].upper() == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
        writer.close()

    async def main():
        # The node's Postfix listens on the wildcard address: bind the
        # specific one with SO_REUSEADDR, as smtp-sink does.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        server = await asyncio.start_server(session, sock=sock, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "connect":
        connect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "bulk":
        bulk(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif cmd == "hold":
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit("unknown command")
