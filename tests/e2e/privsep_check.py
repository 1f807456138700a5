#!/usr/bin/env python3
"""What a process of tlsgated holds and what a user may do, for
tests/e2e/test_privsep.sh (issue 19). Run inside the gateway's network
namespace, as the user whose rights are tested.

  fds PID             JSON: the process's descriptors by kind (netlink, raw,
                      packet, bpf-map, bpf-prog, bpf-other, listening TCP
                      addresses) and BPF mappings in its address space
  nfq-bind QUEUE      bind NFQUEUE QUEUE (then unbind): prints "ok" or the
                      kernel's errno name; exit 0 only when bound
  ctl PATH LINE       one command line to the control socket; prints the
                      answer
  smtp SRC SERVER FROM TO FILE [GO_FILE]
                      an SMTP session from address SRC to SERVER:25 that
                      sends FILE; with GO_FILE it waits after EHLO until
                      that file exists. Prints each reply ("CODE TEXT"),
                      exit 0 only when the message was accepted (250 after
                      the data)
"""
import errno
import json
import os
import socket
import struct
import sys
import time


def sock_table(pid, name, inode_col, state_col=None):
    """inode -> (local address, state) from /proc/PID/net/NAME."""
    out = {}
    try:
        with open(f"/proc/{pid}/net/{name}") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        c = line.split()
        if len(c) <= inode_col:
            continue
        state = c[state_col] if state_col is not None else ""
        out[c[inode_col]] = (c[1] if name.startswith(("tcp", "udp", "raw")) else "", state)
    return out


def hex_addr(a):
    """0100007F:1F51 -> 127.0.0.1:8017 (IPv4) or the IPv6 form."""
    host, port = a.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip = "[" + socket.inet_ntop(socket.AF_INET6, words) + "]"
    return f"{ip}:{int(port, 16)}"


def cmd_fds(pid):
    tables = {
        "netlink": sock_table(pid, "netlink", 9),
        "raw": {**sock_table(pid, "raw", 9), **sock_table(pid, "raw6", 9)},
        "packet": sock_table(pid, "packet", 8),
        "tcp": {**sock_table(pid, "tcp", 9, 3), **sock_table(pid, "tcp6", 9, 3)},
        "udp": {**sock_table(pid, "udp", 9), **sock_table(pid, "udp6", 9)},
    }
    r = {"netlink": 0, "raw": 0, "packet": 0, "udp": 0, "unix_or_other_socket": 0,
         "bpf-map": 0, "bpf-prog": 0, "bpf-other": 0, "tcp_listen": [], "tcp_other": 0,
         "fds": 0, "bpf_mappings": 0}
    d = f"/proc/{pid}/fd"
    for fd in sorted(os.listdir(d), key=int):
        try:
            link = os.readlink(f"{d}/{fd}")
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except OSError:
            continue
        r["fds"] += 1
        if "map_id:" in info or link == "anon_inode:bpf-map":
            r["bpf-map"] += 1
        elif "prog_id:" in info or link == "anon_inode:bpf-prog":
            r["bpf-prog"] += 1
        elif link.startswith("anon_inode:bpf"):
            r["bpf-other"] += 1
        elif link.startswith("socket:["):
            ino = link[8:-1]
            if ino in tables["netlink"]:
                r["netlink"] += 1
            elif ino in tables["raw"]:
                r["raw"] += 1
            elif ino in tables["packet"]:
                r["packet"] += 1
            elif ino in tables["udp"]:
                r["udp"] += 1
            elif ino in tables["tcp"]:
                addr, state = tables["tcp"][ino]
                if state == "0A":
                    r["tcp_listen"].append(hex_addr(addr))
                else:
                    r["tcp_other"] += 1
            else:
                r["unix_or_other_socket"] += 1
    with open(f"/proc/{pid}/maps") as f:
        r["bpf_mappings"] = sum(1 for line in f if "bpf" in line.split("/")[-1] and "anon_inode" in line)
    print(json.dumps(r, sort_keys=True))
    return 0


NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def nfq_config(s, queue, command, seq):
    """One NFQNL_MSG_CONFIG command; the kernel's answer as 0 or -errno."""
    attr = struct.pack("=HHBBH", 8, NFQA_CFG_CMD, command, 0, 0)
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + attr
    hdr = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG,
                      NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    s.send(hdr + body)
    while True:
        data = s.recv(65536)
        off = 0
        while off + 16 <= len(data):
            ln, typ, _fl, sq, _pid = struct.unpack_from("=IHHII", data, off)
            if typ == NLMSG_ERROR and sq == seq:
                return struct.unpack_from("=i", data, off + 16)[0]
            off += max((ln + 3) & ~3, 16)


def cmd_nfq_bind(queue):
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        s.settimeout(3)
        s.bind((0, 0))
        rc = nfq_config(s, queue, NFQNL_CFG_CMD_BIND, 1)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        return 1
    if rc < 0:
        print(errno.errorcode.get(-rc, str(-rc)))
        return 1
    nfq_config(s, queue, NFQNL_CFG_CMD_UNBIND, 2)
    print("ok")
    return 0


def cmd_ctl(path, line):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall((line + "\n").encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError as e:
        print(f"error: {errno.errorcode.get(e.errno, e.errno)}")
        return 1
    sys.stdout.write(out.decode(errors="replace"))
    return 0


def cmd_smtp(src, server, frm, to, path, go_file=None):
    with open(path, "rb") as f:
        data = f.read()
    s = socket.socket()
    s.settimeout(15)
    s.bind((src, 0))
    f = s.makefile("rb")

    def reply():
        while True:
            try:
                line = f.readline()
            except OSError:
                return "closed-or-timeout"
            if not line:
                return "closed"
            if line[3:4] != b"-":
                return line.decode(errors="replace").strip()

    def say(cmd):
        try:
            s.sendall(cmd)
        except OSError:
            return "closed"
        return reply()

    try:
        s.connect((server, 25))
    except OSError as e:
        print(f"connect: {errno.errorcode.get(e.errno, e.errno)}")
        return 1
    print("banner:", reply())
    print("EHLO:", say(b"EHLO secure.world.test\r\n"), flush=True)
    if go_file:
        end = time.time() + 30
        while not os.path.exists(go_file) and time.time() < end:
            time.sleep(0.05)
    r = say(f"MAIL FROM:<{frm}>\r\n".encode())
    print("MAIL:", r, flush=True)
    if not r.startswith("250"):
        return 1
    r = say(f"RCPT TO:<{to}>\r\n".encode())
    print("RCPT:", r, flush=True)
    if not r.startswith("250"):
        return 1
    r = say(b"DATA\r\n")
    print("DATA:", r, flush=True)
    if not r.startswith("354"):
        return 1
    body = data.replace(b"\r\n", b"\n").replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")
    r = say(body + b"\r\n.\r\n")
    print("end of data:", r, flush=True)
    say(b"QUIT\r\n")
    return 0 if r.startswith("250") else 1


def main(argv):
    if len(argv) >= 2 and argv[0] == "fds":
        return cmd_fds(int(argv[1]))
    if len(argv) == 2 and argv[0] == "nfq-bind":
        return cmd_nfq_bind(int(argv[1]))
    if len(argv) == 3 and argv[0] == "ctl":
        return cmd_ctl(argv[1], argv[2])
    if len(argv) in (6, 7) and argv[0] == "smtp":
        return cmd_smtp(*argv[1:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
