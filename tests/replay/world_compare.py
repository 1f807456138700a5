#!/usr/bin/env python3
"""Checks tlsgate-replay's summaries of a test-world capture against what
the MTAs logged. Used by test_world_capture.sh; prints "PASS desc" /
"FAIL desc" lines (the script turns them into TAP) and "# ..." diagnostics.

Usage: world_compare.py CAPTURE_DIR WORLD_DIR

CAPTURE_DIR holds world.pcap, replay.json (tlsgate-replay --json),
cases.tsv (one message per line: name, recipient, server address,
receiving node, Message-ID, start and end time, delivered file),
mx-refuse.log, mx-tls.der and mx-tls.spki (the receiver's certificate and
its SubjectPublicKeyInfo, DER). WORLD_DIR/in/maillog is the sender's log
with the SMTP conversation (debug_peer_list).

Sources of truth, per message:
  sender    the qmgr/cleanup/smtp lines of its queue ID: envelope, relay,
            the conversation ("> cmd", "< reply"), "TLS connection
            established to ...: TLSvX with cipher C" (OpenSSL cipher name,
            mapped to the IANA name by "openssl ciphers -stdname");
  receiver  the delivered message's Received header (HELO name, client
            address, "using TLSvX with cipher C", "for <rcpt>") and
            Return-Path; for mx-refuse its own log;
  capture   tshark's view of the connection: SYN time (to tie the
            connection to the message sent in that window), payload bytes
            per direction, RST/FIN.
The engine's capability names: keywords it does not name are "OTHER".
"""
import hashlib
import json
import os
import re
import subprocess
import sys

CAP, WORLD = sys.argv[1], sys.argv[2]
ENGINE_CAPS = {"STARTTLS", "PIPELINING", "CHUNKING", "SIZE", "8BITMIME", "REQUIRETLS",
               "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES", "AUTH", "BINARYMIME"}


def result(ok, desc, why=None):
    print("%s %s" % ("PASS" if ok else "FAIL", desc))
    if not ok and why:
        for line in str(why).splitlines():
            print("#   " + line)


def expect(name, what, got, want):
    result(got == want, "%s: %s" % (name, what), "got  %r\nwant %r" % (got, want))


def cipher_names():
    out = subprocess.run(["openssl", "ciphers", "-stdname", "ALL:COMPLEMENTOFALL"],
                         capture_output=True, text=True, check=True).stdout
    m = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "-":
            m[parts[2]] = parts[0]
    return m


def capture_flows():
    """Per client port: SYN time, payload bytes each way, FINs, and whether
    a RST ended it: one its receiver takes, as Linux does (RFC 5961: at the
    sequence number it expects next; after the sender's FIN also at the
    FIN's own number, tcp_reset_check). A RST numbered from an older ACK
    (a closed Linux socket answering data sent before the FIN reached it)
    is ignored by the receiver, and does not end the dialog."""
    out = subprocess.run(
        ["tshark", "-r", os.path.join(CAP, "world.pcap"), "-T", "fields",
         "-e", "frame.time_epoch", "-e", "tcp.srcport", "-e", "tcp.dstport",
         "-e", "tcp.flags", "-e", "tcp.len", "-e", "tcp.analysis.retransmission",
         "-e", "tcp.seq_raw"],
        capture_output=True, text=True, check=True).stdout
    flows = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 7 or not f[1]:
            continue
        ts, sp, dp, flags, ln = float(f[0]), int(f[1]), int(f[2]), int(f[3], 16), int(f[4] or 0)
        retrans = f[5] != ""
        seq = int(f[6])
        to_server = dp == 25
        side = "client" if to_server else "server"
        fl = flows.setdefault(sp if to_server else dp,
                              {"syn": None, "client": 0, "server": 0, "rst": False, "fin": set(),
                               "next": {}, "fin_seq": {}})
        if to_server and flags & 0x12 == 0x02 and fl["syn"] is None:
            fl["syn"] = ts
        if not retrans:
            fl[side] += ln
        if flags & 0x04:
            nxt = fl["next"].get(side)
            if nxt is None or seq == nxt or seq == fl["fin_seq"].get(side):
                fl["rst"] = True
            continue
        end = (seq + ln + (1 if flags & 0x03 else 0)) & 0xffffffff
        if side not in fl["next"] or (end - fl["next"][side]) & 0xffffffff < 0x80000000:
            fl["next"][side] = end
        if flags & 0x01:
            fl["fin"].add(side)
            fl["fin_seq"][side] = (seq + ln) & 0xffffffff
    return flows


def sender_record(lines, msgid, rcpt):
    """What the sending Postfix logged for the message."""
    rec = {"qid": None, "from": None, "attempts": [], "conv": []}
    for ln in lines:
        m = re.search(r"postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=<(.*)>", ln)
        if m and m.group(2) == msgid:
            rec["qid"] = m.group(1)
    if not rec["qid"]:
        return rec
    qid = rec["qid"]
    start = None
    for i, ln in enumerate(lines):
        m = re.search(r"postfix/qmgr\[\d+\]: %s: from=<([^>]*)>" % qid, ln)
        if m and start is None:
            rec["from"], start = m.group(1), i
        m = re.search(r"postfix/\w+\[(\d+)\]: %s: to=<([^>]*)>, relay=([^\[]*)\[([^\]]*)\]:(\d+),.* status=(\w+)"
                      % qid, ln)
        if m:
            rec["attempts"].append({"pid": m.group(1), "to": m.group(2), "relay": m.group(4),
                                    "port": int(m.group(5)), "status": m.group(6), "line": i})
    if start is None or not rec["attempts"]:
        return rec
    first = rec["attempts"][0]
    tag = "postfix/smtp[%s]: " % first["pid"]
    for ln in lines[start:first["line"]]:
        if tag in ln:
            rec["conv"].append(ln.split(tag, 1)[1])
    return rec


def parse_conv(conv):
    """The dialog the sender logged: what a passive observer can see of it."""
    d = {"ehlo": None, "keywords": None, "starttls_issued": False, "starttls_reply": None,
         "tls": None, "mail": [], "rcpt": [], "quit_plain": False, "replies": {}}
    pending = ["greeting"]  # commands waiting for a reply, in order
    in_tls = False
    ehlo_reply = None
    for ln in conv:
        m = re.match(r"(\w+) TLS connection established to \S+\]:\d+: (\S+) with cipher (\S+)", ln)
        if m:
            d["tls"] = {"trust": m.group(1), "version": m.group(2), "cipher": m.group(3)}
            in_tls = True
            continue
        m = re.match(r"([<>]) [^ ]*\]:\d+: (.*)$", ln)
        if not m:
            continue
        arrow, text = m.groups()
        if arrow == ">":
            verb = text.split(" ", 1)[0].upper()
            if in_tls:
                continue
            pending.append(verb)
            if verb == "EHLO" and d["ehlo"] is None:
                d["ehlo"] = text.split(" ", 1)[1] if " " in text else ""
                ehlo_reply = []
            elif verb == "STARTTLS":
                d["starttls_issued"] = True
            elif verb == "MAIL":
                d["mail"].append(re.search(r"<([^>]*)>", text).group(1))
            elif verb == "RCPT":
                d["rcpt"].append(re.search(r"<([^>]*)>", text).group(1))
            elif verb == "QUIT":
                d["quit_plain"] = True
            continue
        if in_tls:
            continue
        if ehlo_reply is not None and d["keywords"] is None and pending and pending[0] == "EHLO":
            ehlo_reply.append(text[4:])
        if len(text) > 3 and text[3] == "-":
            continue
        cmd = pending.pop(0) if pending else None
        code = int(text[:3])
        if cmd == "EHLO" and d["keywords"] is None:
            d["keywords"] = ehlo_reply[1:]
        if cmd == "STARTTLS":
            d["starttls_reply"] = code
        if cmd and cmd not in d["replies"]:
            d["replies"][cmd] = code
    return d


def engine_caps(keywords):
    caps = set()
    for k in keywords or []:
        word = re.split(r"[ =]", k, 1)[0].upper()
        caps.add(word if word in ENGINE_CAPS else "OTHER")
    return caps


def receiver_record(node, path, msgid):
    """The receiver's view: Received header of the delivered message, or the
    mx-refuse log."""
    r = {"helo": None, "client": None, "tls": None, "from": None, "rcpt": [], "starttls_refused": False}
    if node == "mx-refuse":
        block, cur = None, []
        with open(os.path.join(CAP, "mx-refuse.log")) as f:
            for ln in f:
                ln = ln.rstrip("\n")
                if ln.startswith("connect from "):
                    cur = [ln]
                else:
                    cur.append(ln)
                if ln == "message-id=<%s>" % msgid:
                    block = cur
        for ln in block or []:
            if ln.startswith("connect from "):
                r["client"] = ln[len("connect from "):]
            elif ln.startswith("EHLO "):
                r["helo"] = ln[5:]
            elif ln == "STARTTLS refused 454":
                r["starttls_refused"] = True
            elif ln.startswith("from=<"):
                r["from"] = ln[6:-1]
            elif ln.startswith("to=<"):
                r["rcpt"].append(ln[4:-1])
        return r
    with open(path, errors="replace") as f:
        head = f.read().split("\n\n", 1)[0]
    # Unfold, then the first Received header is the receiver's own.
    head = re.sub(r"\n[ \t]+", " ", head)
    for ln in head.split("\n"):
        if ln.startswith("Return-Path:"):
            r["from"] = re.search(r"<([^>]*)>", ln).group(1)
        if ln.startswith("Received:") and r["helo"] is None:
            m = re.match(r"Received: from (\S+) \(\S+ \[([^\]]+)\]\)", ln)
            if m:
                r["helo"], r["client"] = m.group(1), re.sub(r"^IPv6:", "", m.group(2))
            m = re.search(r"\(using (\S+) with cipher (\S+)", ln)
            if m:
                r["tls"] = {"version": m.group(1), "cipher": m.group(2)}
            m = re.search(r" for <([^>]*)>", ln)
            if m:
                r["rcpt"].append(m.group(1))
    return r


def main():
    with open(os.path.join(CAP, "replay.json")) as f:
        sessions = [json.loads(ln) for ln in f if ln.strip()]
    by_port = {s["orig_p"]: s for s in sessions}
    flows = capture_flows()
    ciphers = cipher_names()
    with open(os.path.join(WORLD, "in", "maillog"), errors="replace") as f:
        sender_lines = f.read().splitlines()
    with open(os.path.join(CAP, "mx-tls.der"), "rb") as f:
        cert_fp = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(CAP, "mx-tls.spki"), "rb") as f:
        spki_fp = hashlib.sha256(f.read()).hexdigest()
    cases = []
    with open(os.path.join(CAP, "cases.tsv")) as f:
        for ln in f:
            name, rcpt, addr, node, msgid, t0, t1, path = ln.rstrip("\n").split("\t")
            cases.append((name, rcpt, addr, node, msgid, float(t0), float(t1), path))

    explained = set()
    for name, rcpt, addr, node, msgid, t0, t1, path in cases:
        ports = sorted(p for p, fl in flows.items() if fl["syn"] is not None and t0 <= fl["syn"] <= t1)
        explained.update(ports)
        snd = sender_record(sender_lines, msgid, rcpt)
        result(bool(snd["qid"] and snd["attempts"]), "%s: the sender logged the delivery" % name,
               "no queue ID / delivery line for <%s>" % msgid)
        if not snd["attempts"]:
            continue
        expect(name, "one connection in the capture per delivery attempt the sender logged",
               len(ports), len(snd["attempts"]))
        if not ports or ports[0] not in by_port:
            result(False, "%s: tlsgate-replay has the connection" % name,
                   "client ports %r, replay has %r" % (ports, sorted(by_port)))
            continue
        s = by_port[ports[0]]
        fl = flows[ports[0]]
        conv = parse_conv(snd["conv"])
        rcv = receiver_record(node, path, msgid)
        att = snd["attempts"][0]

        expect(name, "endpoints: client as the receiver logged, server as the sender's relay",
               (s["orig_h"], s["resp_h"], s["resp_p"]), (rcv["client"], att["relay"], att["port"]))
        result(addr == att["relay"], "%s: the sender used the route under test (%s)" % (name, addr),
               "relay %s" % att["relay"])
        expect(name, "SMTP from the handshake on", (s["smtp"], s["midstream"]), (True, False))
        expect(name, "helo as the sender sent it", s["helo"], conv["ehlo"])
        expect(name, "helo as the receiver recorded it", s["helo"], rcv["helo"])
        expect(name, "EHLO capabilities as the sender logged the reply",
               sorted(s["capabilities"]), sorted(engine_caps(conv["keywords"])))
        want_st = {"offered": any(k.upper() == "STARTTLS" for k in conv["keywords"] or []),
                   "issued": conv["starttls_issued"],
                   "accepted": conv["starttls_reply"] == 220,
                   "reply": conv["starttls_reply"]}
        expect(name, "STARTTLS offered/issued/accepted/reply as the sender logged", s["starttls"], want_st)
        if node == "mx-refuse":
            result(rcv["starttls_refused"] and s["starttls"]["reply"] == 454,
                   "%s: the refusal (454) that mx-refuse logged" % name)

        t = s["tls"]
        if conv["tls"]:
            ver = conv["tls"]["version"].replace(".", "")
            iana = ciphers.get(conv["tls"]["cipher"], "unknown:" + conv["tls"]["cipher"])
            got = (t or {}).get("version"), (t or {}).get("cipher"), (t or {}).get("established")
            expect(name, "TLS version and cipher as the sender logged (%s %s)" %
                   (conv["tls"]["version"], conv["tls"]["cipher"]), got, (ver, iana, True))
            rt = rcv["tls"] or {}
            expect(name, "TLS version and cipher as the receiver logged",
                   got[:2], (rt.get("version", "-").replace(".", ""), ciphers.get(rt.get("cipher"), "-")))
            # The certificate travels in clear only in TLS <= 1.2 with an
            # authenticated cipher; the sender says "Anonymous" otherwise.
            visible = ver != "TLSv13" and conv["tls"]["trust"] != "Anonymous"
            expect(name, "server certificate and SPKI fingerprints (%s)" %
                   ("mx-tls.pem" if visible else "not on the wire"),
                   ((t or {}).get("cert_chain_fps"), (t or {}).get("spki_fps")),
                   ([cert_fp], [spki_fp]) if visible else ([], []))
            expect(name, "no SNI (Postfix sends none to an address literal)",
                   (t or {}).get("server_name"), None)
        else:
            expect(name, "no TLS, as the sender logged none", t, None)
            result(rcv["tls"] is None, "%s: the receiver logged no TLS either" % name, rcv["tls"])

        # The envelope on the wire: what the sender sent before TLS.
        expect(name, "MAIL FROM in clear as the sender sent it", s["mailfrom"], conv["mail"])
        expect(name, "RCPT TO in clear as the sender sent it", s["rcptto"], conv["rcpt"])
        if not conv["tls"]:
            expect(name, "envelope as logged by both MTAs (qmgr, delivery / receiver)",
                   (s["mailfrom"], s["rcptto"]), ([snd["from"]], [att["to"]]))
            expect(name, "envelope as the receiver got it", (s["mailfrom"], s["rcptto"]),
                   ([rcv["from"]], rcv["rcpt"]))
            tx = s["transactions"][0] if s["transactions"] else {}
            expect(name, "MAIL and DATA reply codes as the sender logged",
                   (tx.get("mail_reply"), tx.get("data_reply")),
                   (conv["replies"].get("MAIL"), conv["replies"].get("DATA")))
        expect(name, "no anomaly on a real Postfix dialog", s["anomalies"], [])
        if conv["quit_plain"]:
            want_end = "quit"
        elif fl["rst"]:
            want_end = "rst"
        elif fl["fin"] == {"client", "server"}:
            want_end = "fin"
        else:
            want_end = "open"
        expect(name, "end of the dialog (sender's QUIT in clear, else a RST its receiver takes, else both FINs)",
               s["end"], want_end)
        expect(name, "payload bytes each way as tshark counts them",
               (s["bytes"]["client"], s["bytes"]["server"]), (fl["client"], fl["server"]))

    extra = sorted(set(by_port) - explained)
    result(not extra, "every connection in the replay belongs to a message sent",
           "unexplained client ports %r" % extra)


if __name__ == "__main__":
    main()
