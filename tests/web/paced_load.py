#!/usr/bin/env python3
"""Concurrent load on one URL for the web rate test (stdlib only): N GET
requests spread over C keep-alive connections, all at once. Prints the
number of 200 answers, the other statuses or errors, and the seconds from
the first request to the last answer.

usage: paced_load.py URL N C
"""
import http.client
import sys
import threading
import time
import urllib.parse

url, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlsplit(url)
path = u.path + ("?" + u.query if u.query else "")
lock = threading.Lock()
ok = 0
other = []
left = n


def worker():
    global ok, left
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    while True:
        with lock:
            if left == 0:
                break
            left -= 1
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            with lock:
                if r.status == 200:
                    ok += 1
                else:
                    other.append(str(r.status))
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            with lock:
                other.append(type(e).__name__)
            c.close()
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.close()


t0 = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(ok, ",".join(other) or "-", "%.3f" % (time.monotonic() - t0))
