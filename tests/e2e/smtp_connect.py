"""The test clients' connection: TCP to SERVER (IPv6 when it has a colon)
on port 25, TCP_NODELAY (each send its own segment), a timeout; and
reading one reply from it."""
import socket


def connect(server, timeout):
    """Returns the socket, a binary file to read it by lines, and the
    address family."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((server, 25))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("rb"), family


def reply(f):
    """The last line of the next reply ("CODE TEXT"), or "closed" (the
    connection ended) or "timeout"."""
    while True:
        try:
            line = f.readline()
        except socket.timeout:
            return "timeout"
        except OSError:
            return "closed"
        if not line:
            return "closed"
        if len(line) < 4 or line[3:4] != b"-":
            return line.decode(errors="replace").rstrip("\r\n")
