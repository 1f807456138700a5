#!/usr/bin/env python3
"""mute_server.py - an SMTP server that stops answering: it greets, answers
EHLO (PIPELINING, CHUNKING), MAIL and RCPT, reads BDAT chunks but never
answers them, nor anything after. For the gateway's wait for replies a
server owes. Usage: mute_server.py ADDR PORT (serves until killed)."""
import socket
import sys
import threading


def serve(conn):
    buf = b""
    mute = False
    try:
        conn.sendall(b"220 mute.world.test ESMTP\r\n")
        while True:
            while b"\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            verb = line.strip().split(b" ")[0].upper() if line.strip() else b""
            if mute:
                continue
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-mute.world.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                conn.sendall(b"250 ok\r\n")
            elif verb == b"BDAT":
                mute = True  # read on, answer nothing from here
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
    except OSError:
        pass
    finally:
        conn.close()


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
