#!/usr/bin/env python3
"""A tiny SMTP server that offers STARTTLS and refuses it with 454.

Usage: starttls_refuser.py LOGFILE [PORT]

Listens on every address of its namespace (IPv4 and IPv6, port 25 by
default), answers EHLO with STARTTLS among its keywords, STARTTLS with
"454 4.7.0 TLS not available due to local problem" (as Postfix does when
its TLS engine fails), and otherwise accepts mail in plaintext (the
message is read and discarded). Pipelined command groups are answered in
order. LOGFILE gets one line per event, Postfix style enough to check
against: "connect from ADDR", "EHLO NAME", "STARTTLS refused 454",
"from=<...>", "to=<...>", "message-id=<...>", "queued as ID",
"disconnect from ADDR". Runs until killed.
"""
import itertools
import re
import socket
import socketserver
import sys
import threading

LOG = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 25
NAME = "mx-refuse.world.test"
lock = threading.Lock()
queue_ids = itertools.count(1)


def log(line):
    with lock, open(LOG, "a") as f:
        f.write(line + "\n")


def path_of(arg):
    m = re.search(r"<([^>]*)>", arg)
    return m.group(1) if m else ""


class Session(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self):
        peer = self.client_address[0]
        if peer.startswith("::ffff:"):
            peer = peer[7:]
        log("connect from %s" % peer)
        self.reply("220 %s ESMTP refuser" % NAME)
        for raw in self.rfile:
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                log("EHLO %s" % line[5:])
                self.reply("250-%s\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                           "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
                           "250 8BITMIME" % NAME)
            elif verb == "HELO":
                log("HELO %s" % line[5:])
                self.reply("250 %s" % NAME)
            elif verb == "STARTTLS":
                log("STARTTLS refused 454")
                self.reply("454 4.7.0 TLS not available due to local problem")
            elif verb == "MAIL":
                log("from=<%s>" % path_of(line))
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                log("to=<%s>" % path_of(line))
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                for body in self.rfile:
                    if body in (b".\r\n", b".\n"):
                        break
                    m = re.match(rb"(?i)message-id:\s*<([^>]*)>", body)
                    if m:
                        log("message-id=<%s>" % m.group(1).decode("ascii", "replace"))
                qid = "REFUSE%d" % next(queue_ids)
                log("queued as %s" % qid)
                self.reply("250 2.0.0 Ok: queued as %s" % qid)
            elif verb in ("RSET", "NOOP"):
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                break
            else:
                self.reply("502 5.5.2 Error: command not recognized")
        log("disconnect from %s" % peer)


class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


if __name__ == "__main__":
    Server(("::", PORT), Session).serve_forever()
