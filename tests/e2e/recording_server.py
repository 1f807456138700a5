#!/usr/bin/env python3
"""recording_server.py ADDR PORT DIR: a minimal SMTP server for the
differential oracle. It records, per connection, every byte its
application reads (DIR/CLIENT-PORT.read, CLIENT-PORT being the peer as
the kernel reports it; CLIENT-PORT.2 for a second connection from the
same address and port, and so on) and answers as an SMTP server would:
220 greeting; 250 to EHLO (PIPELINING, 8BITMIME, no STARTTLS, no
CHUNKING), HELO, MAIL, RCPT, RSET, NOOP; 354 to DATA, then 250 after
CR LF . CR LF (only there: a '.' after a bare LF or CR ends nothing);
221 to QUIT, then it closes; 502 to anything else (BDAT too: what follows
it are command lines). As Postfix does, it keeps the envelope: 501 to an
EHLO or HELO without a name (and the transaction stays), 503 to a nested
MAIL, to RCPT without MAIL and to DATA without RCPT; a 250 to EHLO, HELO
or RSET and the end of data end the transaction. Lines
end at LF (a CR before it is dropped), as Postfix reads them; an
unfinished line is recorded only when the client closes after it. When
the connection ends, DIR/CLIENT-PORT.end says how and when: "reset",
"eof" (the client closed) or "closed" (after QUIT), then the time
(seconds since the epoch). Prints "ready" once listening."""
import asyncio
import os
import socket
import sys
import time


async def session(reader, writer, outdir):
    peer = writer.get_extra_info("peername")
    name = os.path.join(outdir, "%s-%d" % (peer[0], peer[1]))
    n = 1
    while os.path.exists(name + ".read"):  # the client's address and port again
        n += 1
        name = os.path.join(outdir, "%s-%d.%d" % (peer[0], peer[1], n))
    how = "eof"
    try:
        how = await dialog(reader, writer, name + ".read")
    except ConnectionError:
        how = "reset"
    with open(name + ".end", "w") as end:
        end.write("%s %.3f\n" % (how, time.time()))
    writer.close()


async def dialog(reader, writer, path):
    """Returns "closed" after QUIT, "eof" when the client closed first."""
    with open(path, "wb") as rec:
        async def line():
            data = await reader.readline()
            rec.write(data)
            rec.flush()
            return data

        writer.write(b"220 recorder.world.test ESMTP\r\n")
        await writer.drain()
        mail = rcpt = False  # the open transaction
        while True:
            data = await line()
            if not data.endswith(b"\n"):
                return "eof"
            cmd = data.rstrip(b"\r\n").upper()
            verb = cmd.split(b" ", 1)[0]
            if verb in (b"EHLO", b"HELO") and not cmd[5:].strip():
                writer.write(b"501 5.5.4 Syntax: %s hostname\r\n" % verb)
            elif verb == b"EHLO":
                mail = rcpt = False
                writer.write(b"250-recorder.world.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif cmd.startswith(b"MAIL FROM:") and mail:
                writer.write(b"503 5.5.1 Error: nested MAIL command\r\n")
            elif cmd.startswith(b"RCPT TO:") and not mail:
                writer.write(b"503 5.5.1 Error: need MAIL command\r\n")
            elif verb == b"DATA" and not rcpt:
                writer.write(b"503 5.5.1 Error: need RCPT command\r\n")
            elif verb in (b"HELO", b"RSET", b"NOOP") or cmd.startswith((b"MAIL FROM:", b"RCPT TO:")):
                if verb in (b"HELO", b"RSET"):
                    mail = rcpt = False
                mail = mail or cmd.startswith(b"MAIL FROM:")
                rcpt = rcpt or cmd.startswith(b"RCPT TO:")
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                prev = b"\r\n"
                while True:
                    d = await line()
                    if not d.endswith(b"\n"):
                        return "eof"
                    if d == b".\r\n" and prev.endswith(b"\r\n"):
                        break
                    prev = d
                mail = rcpt = False
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return "closed"
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()


async def main():
    addr, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    srv = await asyncio.start_server(lambda r, w: session(r, w, outdir), addr, port,
                                     family=family, reuse_address=True)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
