#!/usr/bin/env python3
"""Drive the appliance's serial console (a QEMU chardev UNIX socket).

Usage: console.py SOCKET PASSWORD COMMAND [TIMEOUT]
Logs in as root if no shell prompt is there yet, runs COMMAND in the VM's
shell and prints its output; exits with COMMAND's exit status (or 255 when
the console does not answer in TIMEOUT seconds, default 60).
"""
import os, re, socket, sys, time

sock_path, password, command = sys.argv[1:4]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
deadline = time.monotonic() + timeout
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
s.settimeout(0.5)
buf = b""


def read_until(pattern):
    global buf
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        m = rx.search(buf)
        if m:
            out = buf[: m.end()]
            buf = buf[m.end():]
            return out, m
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
    sys.stderr.write("console: timeout waiting for %r; last output:\n%s\n"
                     % (pattern, buf[-800:].decode(errors="replace")))
    sys.exit(255)


def send(line):
    s.sendall(line.encode() + b"\r")


# Wake the console up and find out where it is: login prompt or shell.
send("")
_, m = read_until(rb"(login: ?$|[#$] ?$|Password: ?$)")
if m.group(0).startswith(b"Password"):
    send("")  # abandon a half-done login
    read_until(rb"login: ?$")
    m = re.match(rb"login", b"login")
if m.group(0).startswith(b"login"):
    send("root")
    read_until(rb"Password: ?$")
    send(password)
    read_until(rb"# ?$")
# Quiet, unambiguous shell: no echo, a marker with the exit status.
tag = "TG%d" % os.getpid()
send("dmesg -n 1 2>/dev/null; stty -echo; export PS1='# ' TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0")
read_until(rb"# ?$")
send("%s; echo %s-rc=$?" % (command, tag))
out, m = read_until(tag.encode() + rb"-rc=(\d+)")
text = out[: m.start()].decode(errors="replace").replace("\r", "")
sys.stdout.write(text.lstrip("\n"))
sys.exit(int(m.group(1)))
