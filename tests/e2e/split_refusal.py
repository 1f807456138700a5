#!/usr/bin/env python3
"""split_refusal.py SERVER SENDER TRIES: TRIES SMTP sessions to SERVER:25
(IPv6 when it has a colon), one after the other, each pipelining a MAIL
FROM:<SENDER> cut in two TCP segments, the second carrying the rest of the
line together with the commands after it:

    EHLO in.world.test                  (reply read)
    MAIL FROM:<SENDER>\\r                (segment 1; the cut: $SPLIT_CUT)
    \\nRCPT TO:<user@plain.test>\\r\\nDATA\\r\\n   (segment 2, $SPLIT_DELAY s later)

$SPLIT_CUT: how many bytes of the MAIL line segment 2 carries (default 1:
the LF alone; 2: CR LF; 10: part of the address too). $SPLIT_DELAY:
seconds between the segments (default 0: back to back). Then it reads the
three replies and closes. One line per try:
"PORT TIME REPLY|REPLY|REPLY", PORT the client's, TIME when the last reply
(or the end) came, seconds since the epoch."""
import os
import sys
import time

from smtp_connect import connect, reply


def main():
    server, sender, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cut = int(os.environ.get("SPLIT_CUT", "1"))
    delay = float(os.environ.get("SPLIT_DELAY", "0"))
    mail = b"MAIL FROM:<%s>\r\n" % sender.encode()
    rest = b"RCPT TO:<user@plain.test>\r\nDATA\r\n"
    for _ in range(tries):
        s, f, _ = connect(server, 10)
        port = s.getsockname()[1]
        reply(f)
        s.sendall(b"EHLO in.world.test\r\n")
        reply(f)
        s.sendall(mail[:-cut])
        if delay:
            time.sleep(delay)
        s.sendall(mail[-cut:] + rest)
        out = []
        for _ in range(3):
            r = reply(f)
            out.append(r)
            if r in ("closed", "timeout"):
                break
        print("%d %.3f %s" % (port, time.time(), "|".join(out)), flush=True)
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
