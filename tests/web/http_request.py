#!/usr/bin/env python3
"""Minimal HTTP client for the web tests (stdlib only): one request, prints
the status on the first line, then the response headers prefixed with
"H ", then a blank line and the body.

usage: http_request.py METHOD URL [BODY] [Header: value]...
"""
import http.client
import sys
import urllib.parse

method, url = sys.argv[1], sys.argv[2]
import re
body = None
if len(sys.argv) > 3 and not re.match(r"^[A-Za-z-]+: ", sys.argv[3]):
    body = sys.argv[3]
headers = {}
for h in sys.argv[3 + (body is not None):]:
    k, v = h.split(":", 1)
    headers[k.strip()] = v.strip()
u = urllib.parse.urlsplit(url)
path = u.path + ("?" + u.query if u.query else "")
c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
if body is not None:
    headers.setdefault("Content-Type", "application/json")
# The URL is sent as given (already percent-encoded by the caller).
# A Host header given by the caller replaces the one from the URL.
c.putrequest(method, path, skip_accept_encoding=True,
             skip_host=any(k.lower() == "host" for k in headers))
for k, v in headers.items():
    c.putheader(k, v)
data = body.encode() if body is not None else None
if data is not None:
    c.putheader("Content-Length", str(len(data)))
c.endheaders(data)
r = c.getresponse()
print(r.status)
for k, v in r.getheaders():
    print("H %s: %s" % (k, v))
print()
sys.stdout.write(r.read().decode("utf-8", "replace"))
