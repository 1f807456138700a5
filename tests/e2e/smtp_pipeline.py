#!/usr/bin/env python3
"""smtp_pipeline.py - one SMTP session, two transactions, the second one
pipelined (RFC 2920) right behind the first one's end of data, in the
same write as the final ".":

    MAIL FROM:<FROM1> RCPT TO:<TO> DATA  <- 354
    <MESSAGE1, CONTENT_SIZE bytes> "." MAIL FROM:<FROM2> RCPT TO:<TO> DATA

Prints one line per reply, "<command> <code> <text>", and exits 0 when the
session ran to its end (whatever the codes), 1 when it could not connect,
the connection broke before a reply or a line was no reply (a last line
"closed <why> (after N s)"). Usage:
    smtp_pipeline.py SERVER FROM1 FROM2 TO MESSAGE_FILE SUBJECT2 [bdat]
The server's port is $SMTP_PORT (default 25). The message file must
already be dot-stuffed and end in CRLF; the second message is a short one with the subject SUBJECT2. With "bdat" (RFC 3030)
the file is sent as it is (CRLF, not dot-stuffed) in pipelined 1 MiB BDAT
chunks, the last one "BDAT n LAST", and the second transaction follows it
in the same write, its message one "BDAT n LAST"; the replies are named
BDAT1, BDAT2, ... and DOT1 for the last chunk, DOT2 for the second.
With "serial" nothing is pipelined: each command waits for its reply,
and each message with its "." goes in one write of its own (so its end of
data ends the write), the second transaction after the first one's 250.
With SPLIT_END=SECONDS, each message waits that long after the 354, and
its last line and "." go in a second write that long after the rest.
"""
import os
import socket
import sys
import time


class Conn:
    def __init__(self, host):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect((host, int(os.environ.get("SMTP_PORT", "25"))))
        self.buf = b""

    def reply(self):
        """One (possibly multi-line) reply: (code, last line's text)."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError("connection closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if not (line[:3].isdigit() and line[3:4] in ("", " ", "-")):
                raise ValueError(f"not a reply line: {line!r}")
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), line[4:]


def main():
    server, from1, from2, to, path, subject2 = sys.argv[1:7]
    mode = sys.argv[7] if len(sys.argv) > 7 else ""
    bdat = mode == "bdat"
    with open(path, "rb") as f:
        message = f.read()
    out = []
    t0 = time.monotonic()
    try:
        c = Conn(server)

        def expect(cmd):
            code, text = c.reply()
            out.append(f"{cmd} {code} {text}")
            return code

        expect("greeting")
        c.s.sendall(b"EHLO in.world.test\r\n")
        expect("EHLO")
        if mode == "serial":
            for k, (sender, body) in enumerate(
                    ((from1, message),
                     (from2, f"Subject: {subject2}\r\n\r\nsecond\r\n".encode())), 1):
                c.s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
                if expect(f"MAIL{k}") != 250:
                    break
                c.s.sendall(f"RCPT TO:<{to}>\r\n".encode())
                expect(f"RCPT{k}")
                c.s.sendall(b"DATA\r\n")
                if expect(f"DATA{k}") != 354:
                    break
                pause = float(os.environ.get("SPLIT_END", "0"))
                cut = body.rfind(b"\n", 0, len(body) - 1) + 1
                if pause and cut:
                    # after a pause (the content handed over meanwhile),
                    # all but the last line, then the last line with the
                    # end of data
                    time.sleep(pause)
                    c.s.sendall(body[:cut])
                    time.sleep(pause)
                    c.s.sendall(body[cut:] + b".\r\n")
                else:
                    c.s.sendall(body + b".\r\n")
                expect(f"DOT{k}")
        elif bdat:
            second = f"Subject: {subject2}\r\n\r\nsecond\r\n".encode()
            chunks = [message[i:i + (1 << 20)] for i in range(0, len(message), 1 << 20)]
            out_chunks = b"".join(
                f"BDAT {len(ch)}{' LAST' if k == len(chunks) - 1 else ''}\r\n".encode() + ch
                for k, ch in enumerate(chunks))
            c.s.sendall(f"MAIL FROM:<{from1}>\r\nRCPT TO:<{to}>\r\n".encode() + out_chunks +
                        f"MAIL FROM:<{from2}>\r\nRCPT TO:<{to}>\r\n"
                        f"BDAT {len(second)} LAST\r\n".encode() + second)
            expect("MAIL1")
            expect("RCPT1")
            for k in range(len(chunks) - 1):
                expect(f"BDAT{k + 1}")
            expect("DOT1")
            expect("MAIL2")
            expect("RCPT2")
            expect("DOT2")
        else:
            c.s.sendall(f"MAIL FROM:<{from1}>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
            expect("MAIL1")
            expect("RCPT1")
            if expect("DATA1") == 354:
                second = f"MAIL FROM:<{from2}>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode()
                c.s.sendall(message + b".\r\n" + second)
                expect("DOT1")
                expect("MAIL2")
                expect("RCPT2")
                if expect("DATA2") == 354:
                    c.s.sendall(f"Subject: {subject2}\r\n\r\nsecond\r\n.\r\n".encode())
                    expect("DOT2")
        c.s.sendall(b"QUIT\r\n")
        expect("QUIT")
    except (EOFError, OSError, ValueError) as e:
        out.append(f"closed {e} (after {time.monotonic() - t0:.1f} s)")
        print("\n".join(out))
        return 1
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
