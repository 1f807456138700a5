#!/usr/bin/env python3
"""smtp_script.py SERVER STEP [STEP...]: an SMTP client that plays a fixed
script, whatever the server answers. After the greeting, each STEP
"N:TEXT" sends TEXT in one write of its own (TCP_NODELAY: one segment;
Python string escapes decoded, so \\r\\n and a bare \\n can be written),
waits SCRIPT_DELAY seconds (default 0.3), then reads N replies. Prints
one line per reply: "K WORD REPLY", K the step's number, WORD the first
word of TEXT, REPLY the reply's last line ("CODE TEXT"), "closed" or
"timeout" (SCRIPT_TIMEOUT seconds per reply, default 8); the script ends
at the first "closed" or a failed write ("K WORD closed"). Writes are
never merged with a reply wait: what a step sends is all in flight
before its replies are read, as a pipelining client does."""
import os
import sys
import time

from smtp_connect import connect, reply


def main():
    server, steps = sys.argv[1], sys.argv[2:]
    s, f, _ = connect(server, float(os.environ.get("SCRIPT_TIMEOUT", "8")))
    print("0 greeting " + reply(f), flush=True)
    for k, step in enumerate(steps, 1):
        n, text = step.split(":", 1)
        data = text.encode().decode("unicode_escape").encode("latin-1")
        word = (data.split(None, 1) or [b"-"])[0].decode(errors="replace")[:12]
        try:
            s.sendall(data)
        except OSError:
            print("%d %s closed" % (k, word))
            return 0
        time.sleep(float(os.environ.get("SCRIPT_DELAY", "0.3")))
        for _ in range(int(n)):
            r = reply(f)
            print("%d %s %s" % (k, word, r), flush=True)
            if r == "closed":
                return 0
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
