#!/usr/bin/python3
"""Drives headless Chromium over the DevTools protocol (--remote-debugging-pipe,
Python standard library only) to look at the status page as a person would:
at a desktop size with a mouse, and at phone width (390x844, touch).

    cdp_page.py CHROMIUM URL OUTDIR NAME WIDTH HEIGHT [touch]

Loads URL, waits until the page's script has loaded everything
(body[data-state=ready]), saves OUTDIR/NAME.html (the DOM) and
OUTDIR/NAME.png (the whole page), hovers the first destination row, then
opens the details of tls.test by a mouse click (or a tap with "touch") and
prints what it found as KEY=VALUE lines (values JSON) for the test to check.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import base64

chromium, url, outdir, name, width, height = sys.argv[1:7]
width, height = int(width), int(height)
touch = len(sys.argv) > 7 and sys.argv[7] == "touch"

to_child_r, to_child_w = os.pipe()
from_child_r, from_child_w = os.pipe()


def child_fds():
    # The protocol pipe: Chromium reads fd 3 and writes fd 4 (copies first:
    # the pipe's own fds may be 3 or 4, and close on exec).
    a, b = os.dup(to_child_r), os.dup(from_child_w)
    os.dup2(a, 3)
    os.dup2(b, 4)


profile = tempfile.mkdtemp(prefix="tlsgate-cdp.")
proc = subprocess.Popen(
    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
     "--no-first-run", "--disable-background-networking", "--disable-component-update",
     "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
     "--window-size=%d,%d" % (width, height), "--remote-debugging-pipe", "about:blank"],
    close_fds=False, preexec_fn=child_fds,
    stdout=subprocess.DEVNULL, stderr=open(os.path.join(outdir, name + "-chromium.log"), "w"))
os.close(to_child_r)
os.close(from_child_w)
wr = os.fdopen(to_child_w, "wb", buffering=0)
rd = os.fdopen(from_child_r, "rb", buffering=0)
buf = b""
next_id = 0
deadline = time.time() + 60


def send(method, params=None, session=None):
    global next_id, buf
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    wr.write(json.dumps(msg).encode() + b"\0")
    while True:
        while b"\0" not in buf:
            if time.time() > deadline:
                raise SystemExit("timeout waiting for " + method)
            chunk = rd.read(65536)
            if not chunk:
                raise SystemExit("chromium closed the pipe during " + method)
            buf += chunk
        raw, buf = buf.split(b"\0", 1)
        m = json.loads(raw)
        if m.get("id") == next_id:
            if "error" in m:
                raise SystemExit("%s: %s" % (method, m["error"]))
            return m.get("result", {})


def out(key, value):
    print("%s=%s" % (key, json.dumps(value)))


try:
    target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    send("Emulation.setDeviceMetricsOverride",
         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": touch}, s)
    if touch:
        send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1}, s)
    send("Page.enable", {}, s)
    send("Page.navigate", {"url": url}, s)

    def js(expr):
        r = send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, s)
        return r.get("result", {}).get("value")

    state = None
    for _ in range(150):
        state = js("document.body && document.body.dataset.state")
        if state == "ready":
            break
        time.sleep(0.1)
    out("state", state)
    time.sleep(0.3)

    # Everything the test checks, read from the live page.
    facts = js(r"""(() => {
      const q = s => Array.from(document.querySelectorAll(s));
      const text = e => (e ? e.textContent : '').trim();
      const visible = e => !!e && !e.hidden && e.offsetParent !== null;
      const rows = {};
      for (const tr of q('tr.dest')) rows[tr.dataset.domain] = {
        cls: tr.dataset.class, seen: tr.dataset.seen, seenText: text(tr.querySelector('td.seen')),
        state: text(tr.querySelector('td.state')), title: tr.title.length,
        more: !!tr.querySelector('button.more[aria-expanded]') };
      const legend = q('.legend li').map(li => ({
        cls: li.querySelector('.badge') && li.querySelector('.badge').dataset.class,
        path: li.querySelector('.badge path') && li.querySelector('.badge path').getAttribute('d'),
        text: text(li) }));
      const times = q('time').map(t => text(t));
      const body = document.body.innerText;
      return {
        rows, legend, times,
        isoBad: times.filter(t => !/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(t)),
        slashDates: (body.match(/\b\d{1,2}\/\d{1,2}\/\d{2,4}\b/g) || []),
        policy: text(document.getElementById('policy-info')),
        hint: visible(document.getElementById('dest-hint')) ? text(document.getElementById('dest-hint')) : '',
        what: q('#events-body tr.event').map(tr => ({ kind: tr.dataset.kind, what: text(tr.querySelector('td.what')) })),
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
      };
    })()""")
    for k, v in facts.items():
        out(k, v)

    with open(os.path.join(outdir, name + ".html"), "w", encoding="utf-8") as f:
        f.write(js("document.documentElement.outerHTML"))
    # The whole page, not only the first screen.
    h = js("Math.ceil(document.documentElement.scrollHeight)")
    send("Emulation.setDeviceMetricsOverride",
         {"width": width, "height": h, "deviceScaleFactor": 1, "mobile": touch}, s)
    time.sleep(0.3)
    shot = send("Page.captureScreenshot", {"format": "png"}, s)["data"]
    with open(os.path.join(outdir, name + ".png"), "wb") as f:
        f.write(base64.b64decode(shot))
    send("Emulation.setDeviceMetricsOverride",
         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": touch}, s)

    # Hover (mouse only) and open the details of tls.test by click or tap.
    def center(sel):
        return js("(() => { const e = document.querySelector(%s); if (!e) return null;"
                  " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                  " return [r.x + r.width / 2, r.y + r.height / 2]; })()" % json.dumps(sel))

    row = 'tr.dest[data-domain="tls.test"]'
    if not touch:
        xy = center(row + " td:nth-child(2)")
        if xy:
            send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": xy[0], "y": xy[1]}, s)
            time.sleep(0.2)
            out("hovered", js("(() => { const h = document.querySelector('tr.dest:hover');"
                              " return h ? h.dataset.domain : null; })()"))
    before = js("document.querySelector('tr.dest-details[data-for=\"tls.test\"]').hidden")
    xy = center(row + " button.more")
    if xy is None:
        out("opened", None)
    else:
        if touch:
            # A finger: touch start and end at one point (Chromium turns
            # that into a tap, and the tap into a click).
            pt = [{"x": xy[0], "y": xy[1], "radiusX": 4, "radiusY": 4, "force": 1, "id": 1}]
            send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": pt}, s)
            time.sleep(0.05)
            send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []}, s)
        else:
            for t in ("mousePressed", "mouseReleased"):
                send("Input.dispatchMouseEvent",
                     {"type": t, "x": xy[0], "y": xy[1], "button": "left", "clickCount": 1}, s)
        time.sleep(0.3)
        out("opened", js(r"""(() => {
          const d = document.querySelector('tr.dest-details[data-for="tls.test"]');
          const b = document.querySelector('tr.dest[data-domain="tls.test"] button.more');
          return { hiddenBefore: %s, hidden: d.hidden, shown: d.offsetParent !== null,
                   expanded: b.getAttribute('aria-expanded'), text: d.textContent.slice(0, 400) };
        })()""" % json.dumps(before)))
        if touch:
            out("tap_scroll_width", js("document.documentElement.scrollWidth"))
finally:
    try:
        send("Browser.close")
    except BaseException:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    subprocess.run(["rm", "-rf", profile])
