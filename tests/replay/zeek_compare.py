#!/usr/bin/env python3
"""Compares tlsgate-replay --json against Zeek's baseline logs; prints TAP.

Usage: zeek_compare.py REPLAY_BINARY ZEEK_VECTOR_DIR

For every baseline directory in MAPPING.tsv whose logs carry SMTP or TLS
(smtp.log, ssl*.log, intel.log for SMTP envelope addresses), every capture
it reads is replayed, and every Zeek row is matched to our summary of the
same connection (orig_h, orig_p, resp_h, resp_p). One TAP test per
baseline and connection. Field mapping (Zeek column -> our JSON field):
  smtp.log  helo -> helo; mailfrom -> mailfrom[]; rcptto -> rcptto[];
            tls -> starttls.accepted.  Zeek writes one row per
            transaction (and sometimes per recipient); rows of one
            connection are compared as sets of values.
  ssl*.log  version -> tls.version; cipher -> tls.cipher;
            server_name -> tls.server_name; established -> tls.established;
            cert_chain_fps -> tls.cert_chain_fps;
            client_cert_chain_fps -> tls.client_cert_chain_fps.
  intel.log seen.where SMTP::IN_MAIL_FROM / SMTP::IN_RCPT_TO indicators
            -> mailfrom[] / rcptto[] (header fields are not ours).
IMAP/POP3/XMPP captures must also come out as not SMTP ("smtp": false).
Rows whose capture is not among the vectors are reported as SKIP.
"""
import json
import os
import subprocess
import sys

n = 0
failed = 0


def tap(ok, desc, diag=None):
    global n, failed
    n += 1
    if not ok:
        failed += 1
    print("%s %d - %s" % ("ok" if ok else "not ok", n, desc))
    for d in diag or []:
        print("#   " + d)


def skip(desc, why):
    global n
    n += 1
    print("ok %d - %s # SKIP %s" % (n, desc, why))


def read_log(path):
    fields, rows = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                fields = line.split("\t")[1:]
            elif line.startswith("#") or not line:
                continue
            elif fields:
                rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def zset(v):
    if v in ("-", "(empty)", ""):
        return []
    return v.split(",")


def zval(v):
    return None if v == "-" else v


def replay(binary, pcap):
    out = subprocess.run([binary, "--json", pcap], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (binary, out.returncode, out.stderr.strip()))
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


def key(o):
    return (o["orig_h"], int(o["orig_p"]), o["resp_h"], int(o["resp_p"]))


def zkey(r):
    return (r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"]))


def compare_ssl(name, z, ours):
    t = ours.get("tls") or {}
    diffs = []
    checks = [
        ("version", zval(z["version"]), t.get("version")),
        ("cipher", zval(z["cipher"]), t.get("cipher")),
        ("server_name", zval(z["server_name"]), t.get("server_name")),
        ("established", z["established"] == "T", bool(t.get("established"))),
    ]
    if "cert_chain_fps" in z:
        checks.append(("cert_chain_fps", zset(z["cert_chain_fps"]), t.get("cert_chain_fps") or []))
    if "client_cert_chain_fps" in z:
        checks.append(("client_cert_chain_fps", zset(z["client_cert_chain_fps"]),
                       t.get("client_cert_chain_fps") or []))
    for field, want, got in checks:
        if want != got:
            diffs.append("%s: zeek %r, ours %r" % (field, want, got))
    return diffs


def compare_smtp(rows, ours):
    diffs = []
    helos = {r["helo"] for r in rows if r["helo"] != "-"}
    if helos and helos != {ours.get("helo")}:
        diffs.append("helo: zeek %r, ours %r" % (sorted(helos), ours.get("helo")))
    zfrom = {r["mailfrom"] for r in rows if r["mailfrom"] != "-"}
    if zfrom != set(ours.get("mailfrom") or []):
        diffs.append("mailfrom: zeek %r, ours %r" % (sorted(zfrom), ours.get("mailfrom")))
    zrcpt = set()
    for r in rows:
        zrcpt |= set(zset(r["rcptto"]))
    if zrcpt != set(ours.get("rcptto") or []):
        diffs.append("rcptto: zeek %r, ours %r" % (sorted(zrcpt), ours.get("rcptto")))
    ztls = any(r["tls"] == "T" for r in rows)
    if ztls != bool(ours["starttls"]["accepted"]):
        diffs.append("tls: zeek %r, ours %r" % (ztls, ours["starttls"]["accepted"]))
    if not ours.get("smtp"):
        diffs.append("not recognised as SMTP")
    return diffs


def main():
    binary, vec = sys.argv[1], sys.argv[2]
    base = os.path.join(vec, "baselines")
    with open(os.path.join(base, "MAPPING.tsv")) as f:
        lines = [l.rstrip("\n").split("\t") for l in f][1:]
    for cols in lines:
        if len(cols) < 3:
            continue
        bdir = cols[0]
        traces = cols[2].split()
        logs = [l for l in ("smtp.log", "ssl.log", "ssl-all.log", "ssl-out.log", "intel.log")
                if os.path.exists(os.path.join(base, bdir, l))]
        if not logs:
            continue
        pcaps, missing = [], []
        for t in traces:
            rel = t.replace("$TRACES/", "")
            p = os.path.join(vec, rel.replace("/", "_"))
            (pcaps if os.path.exists(p) else missing).append(p if os.path.exists(p) else rel)
        ours = {}
        try:
            for p in pcaps:
                for o in replay(binary, p):
                    ours.setdefault(key(o), o)
        except Exception as e:  # a crash is a failure, not a skip
            tap(False, "%s: replay" % bdir, [str(e)])
            continue
        for log in logs:
            rows = read_log(os.path.join(base, bdir, log))
            if log == "smtp.log":
                by = {}
                for r in rows:
                    by.setdefault(zkey(r), []).append(r)
                for k, rs in by.items():
                    desc = "%s %s %s:%d>%s:%d" % (bdir, log, *k)
                    if k not in ours:
                        if missing or bdir.endswith("http-connect"):
                            skip(desc, "connection not replayed (%s)" %
                                 ("capture absent: " + ",".join(missing) if missing
                                  else "SMTP inside an HTTP CONNECT tunnel"))
                        else:
                            tap(False, desc, ["connection missing from replay"])
                        continue
                    d = compare_smtp(rs, ours[k])
                    tap(not d, desc, d)
            elif log == "intel.log":
                for r in rows:
                    where = r.get("seen.where")
                    if where not in ("SMTP::IN_RCPT_TO", "SMTP::IN_MAIL_FROM"):
                        continue
                    k = zkey(r)
                    field = "rcptto" if where == "SMTP::IN_RCPT_TO" else "mailfrom"
                    desc = "%s %s %s %s" % (bdir, log, where, r["seen.indicator"])
                    o = ours.get(k)
                    ok = o is not None and r["seen.indicator"] in (o.get(field) or [])
                    tap(ok, desc, [] if ok else ["%s of ours: %r" % (field, o and o.get(field))])
            else:
                for r in rows:
                    k = zkey(r)
                    desc = "%s %s %s:%d>%s:%d" % (bdir, log, *k)
                    if k not in ours:
                        if missing:
                            skip(desc, "capture absent from vectors: " + ",".join(missing))
                        else:
                            tap(False, desc, ["connection missing from replay"])
                        continue
                    d = compare_ssl(bdir, r, ours[k])
                    tap(not d, desc, d)
        if any(x in bdir for x in (".imap.", ".pop3.", ".xmpp.")):
            for k, o in ours.items():
                tap(not o.get("smtp"), "%s %s:%d>%s:%d is not SMTP" % (bdir, *k))
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
