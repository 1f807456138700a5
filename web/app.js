// tlsgate status page. Everything it shows comes from the daemon's own
// JSON API; no external assets. Text from the store (event reasons, host
// names) is only ever set as textContent, never as HTML.
'use strict';

const REFRESH_MS = 5000;
const LABELS = {
  dane: 'DANE ok', tls: 'TLS', plaintext: 'no TLS', unknown: 'TLS?',
  'dane-failing': 'DANE failing', locked: 'locked',
};
// Most pressing first: what sorting by protection puts on top.
const RANK = { locked: 0, 'dane-failing': 1, plaintext: 2, unknown: 3, tls: 4, dane: 5 };
const SVG_NS = 'http://www.w3.org/2000/svg';
// One icon per class, each shape distinct (not only its colour):
// shield with a check (DANE ok), closed padlock (TLS), open padlock
// (no TLS), question mark (unknown), shield with a cross (DANE failing),
// pause sign (locked: mail waits for an operator).
const ICONS = {
  dane: 'M12 1 3 5v6c0 5.55 3.84 10.74 9 12 5.16-1.26 9-6.45 9-12V5l-9-4zm-2 16-4-4 1.41-1.41L10 14.17l6.59-6.59L18 9l-8 8z',
  tls: 'M18 8h-1V6c0-2.76-2.24-5-5-5S7 3.24 7 6v2H6c-1.1 0-2 .9-2 2v10c0 1.1.9 2 2 2h12c1.1 0 2-.9 2-2V10c0-1.1-.9-2-2-2zm-6 9c-1.1 0-2-.9-2-2s.9-2 2-2 2 .9 2 2-.9 2-2 2zm3.1-9H8.9V6c0-1.71 1.39-3.1 3.1-3.1 1.71 0 3.1 1.39 3.1 3.1v2z',
  plaintext: 'M12 17c1.1 0 2-.9 2-2s-.9-2-2-2-2 .9-2 2 .9 2 2 2zm6-9h-1V6c0-2.76-2.24-5-5-5S7 3.24 7 6h1.9c0-1.71 1.39-3.1 3.1-3.1 1.71 0 3.1 1.39 3.1 3.1v2H6c-1.1 0-2 .9-2 2v10c0 1.1.9 2 2 2h12c1.1 0 2-.9 2-2V10c0-1.1-.9-2-2-2zm0 12H6V10h12v10z',
  unknown: 'M12 2a10 10 0 100 20 10 10 0 000-20zm1 17h-2v-2h2v2zm2.07-7.75l-.9.92C13.45 12.9 13 13.5 13 15h-2v-.5c0-1.1.45-2.1 1.17-2.83l1.24-1.26A1.99 1.99 0 0012 7a2 2 0 00-2 2H8a4 4 0 118 0c0 .88-.36 1.68-.93 2.25z',
  'dane-failing': 'M12 1 3 5v6c0 5.55 3.84 10.74 9 12 5.16-1.26 9-6.45 9-12V5l-9-4zm3.5 13.09-1.41 1.41L12 13.41l-2.09 2.09-1.41-1.41L10.59 12 8.5 9.91 9.91 8.5 12 10.59l2.09-2.09 1.41 1.41L13.41 12l2.09 2.09z',
  locked: 'M12 2C6.48 2 2 6.48 2 12s4.48 10 10 10 10-4.48 10-10S17.52 2 12 2zm-1 14H9V8h2v8zm4 0h-2V8h2v8z',
};
const SEEN = { mail: 'mail', 'looked-up': 'looked up', dns: 'DNS only' };
const SEEN_HELP = {
  mail: 'the gateway saw mail to its MX hosts',
  'looked-up': 'only looked up (probed); no mail seen to its MX hosts',
  dns: 'only named in DNS answers the MTAs received; no mail or probe yet',
};

const state = { destinations: [], sortKey: 'domain', sortDir: 1, filter: '', open: new Set() };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const pad = n => String(n).padStart(2, '0');

// ISO 8601, local time: 2099-01-01 00:00:00 (the offset is in the header
// and in each <time>'s datetime).
function fmtTime(t) {
  if (!t) return '\u2013';
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function tzOffset(d) {
  const m = -d.getTimezoneOffset();
  return (m < 0 ? '-' : '+') + pad(Math.floor(Math.abs(m) / 60)) + ':' + pad(Math.abs(m) % 60);
}

function timeEl(t) {
  if (!t) return '\u2013';
  const d = new Date(t * 1000);
  return el('time', { datetime: fmtTime(t).replace(' ', 'T') + tzOffset(d) }, fmtTime(t));
}

function fmtNum(n) { return typeof n === 'number' ? n.toLocaleString() : '\u2013'; }

// The icon a composer would show: a badge with an SVG and its label.
function badge(cls, title) {
  cls = LABELS[cls] ? cls : 'unknown';
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[cls]);
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return el('span', { class: 'badge ' + cls, 'data-class': cls, title: title || LABELS[cls] }, svg, LABELS[cls]);
}

// Everything known about a destination's MX hosts (hover text, and the
// details row opened by a click or tap).
function details(d) {
  const lines = [];
  lines.push(`${LABELS[d.class] || 'TLS?'}${d.why ? ': ' + d.why : ''}`);
  lines.push(`DNSSEC: ${d.dnssec || 'unknown'}${d.dnssec_basis ? ' (' + d.dnssec_basis + ')' : ''}; TLSA: ${d.tlsa || 'not checked'}`);
  if (d.seen) lines.push(`seen: ${SEEN_HELP[d.seen] || d.seen}`);
  if (d.tls_version) lines.push(`last TLS: ${d.tls_version} ${d.cipher || ''}`);
  if (d.last_block) lines.push(`last blocked ${fmtTime(d.last_block.time)}: ${d.last_block.reason || d.last_block.rule || ''}`);
  for (const m of d.mx || []) {
    lines.push('');
    lines.push(`MX ${m.name}: ${m.label}${m.why ? ' (' + m.why + ')' : ''}`);
    if (m.addresses && m.addresses.length) lines.push(`  addresses: ${m.addresses.join(', ')}`);
    if (m.tls_version) lines.push(`  TLS ${m.tls_version}, cipher ${m.cipher || '?'}`);
    if (m.best_version) lines.push(`  best version seen: ${m.best_version}`);
    lines.push(`  DNSSEC ${m.dnssec}${m.dnssec_basis ? ' (' + m.dnssec_basis + ')' : ''}; TLSA ${m.tlsa || 'not checked'}`);
    if (m.dane) lines.push(`  DANE ${m.dane.result} (${m.dane.source}${m.dane.time ? ', ' + fmtTime(m.dane.time) : ''})`);
    if (typeof m.tls_count === 'number') lines.push(`  ${m.flows ?? 0} flows seen, ${m.blocks ?? 0} blocked; last seen ${fmtTime(m.last_seen)}`);
    for (const p of m.probe || []) lines.push(`  probe ${p.addr || ''}: ${p.verdict}${p.reason ? ' (' + p.reason + ')' : ''}`);
  }
  if (d.probed) lines.push('', `probed ${fmtTime(d.probed.time)}: ${d.probed.class}${d.probed.reason ? ' (' + d.probed.reason + ')' : ''}`);
  return lines.join('\n');
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ cache: 'no-store' }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || `${path}: HTTP ${r.status}`);
  return body;
}

// ---- counters and chart --------------------------------------------------

function blockTotal(s) {
  const by = s.blocks || (s.verdicts && s.verdicts.blocked_by_reason) || s.recent_blocks || {};
  return { total: Object.values(by).reduce((a, b) => a + b, 0), by };
}

function renderStats(s) {
  const f = s.flows || {}, q = s.queue || {};
  const b = blockTotal(s);
  $('count-flows').textContent = fmtNum(f.total);
  $('count-offloaded').textContent = fmtNum(f.offloaded_total);
  $('count-blocked').textContent = fmtNum(b.total);
  $('count-inspecting').textContent = fmtNum(f.inspecting);
  $('count-failopen').textContent = fmtNum(q.drops);
  $('count-queue').textContent = fmtNum(q.packets);
  const v = s.verdicts || {};
  $('count-passed-tls').textContent = fmtNum(v.passed_tls);
  $('count-passed-plain').textContent = fmtNum(v.passed_plaintext);
  const rules = $('count-rules');
  rules.replaceChildren(...Object.entries(b.by).map(([r, n]) => el('li', { 'data-rule': r }, `${r}: ${n}`)));
  renderChart((s.history && s.history.samples) || []);
}

function renderChart(samples) {
  const svg = $('chart');
  svg.replaceChildren();
  // Per-minute increments between consecutive samples; the last point is live.
  const pts = [];
  for (let i = 1; i < samples.length; i++) {
    pts.push({ t: samples[i].time, flows: Math.max(0, samples[i].flows - samples[i - 1].flows), blocks: Math.max(0, samples[i].blocked - samples[i - 1].blocked) });
  }
  $('chart-note').textContent = pts.length ? '' : '(the first minute is being collected)';
  const max = Math.max(1, ...pts.map(p => p.flows), ...pts.map(p => p.blocks));
  const slot = 600 / 61, w = slot * 0.42;
  pts.slice(-61).forEach((p, i) => {
    const x = i * slot + 1;
    for (const [k, off, cls] of [['flows', 0, 'bar-flows'], ['blocks', w, 'bar-blocks']]) {
      const h = (p[k] / max) * 110;
      const r = document.createElementNS(SVG_NS, 'rect');
      r.setAttribute('x', (x + off).toFixed(1));
      r.setAttribute('y', (118 - h).toFixed(1));
      r.setAttribute('width', w.toFixed(1));
      r.setAttribute('height', Math.max(h, p[k] ? 1 : 0).toFixed(1));
      r.setAttribute('class', cls);
      const t = document.createElementNS(SVG_NS, 'title');
      t.textContent = `${fmtTime(p.t)}: ${p[k]} ${k}`;
      r.append(t);
      svg.append(r);
    }
  });
}

// ---- destinations ----------------------------------------------------------

function sortValue(d, key) {
  switch (key) {
    case 'class': return RANK[d.class] ?? 1;
    case 'mx': return (d.mx || []).map(m => m.name).join(' ');
    case 'tls': return d.tls_version || '';
    case 'checked': return d.checked || 0;
    case 'seen': return d.seen || '';
    case 'state': return (d.locked ? 0 : 2) - (d.blocks ? 1 : 0);
    default: return d.domain || (d.mx && d.mx[0] && d.mx[0].name) || '';
  }
}

// Blocked and locked, per destination.
function stateCell(d) {
  const parts = [];
  if (d.locked) {
    const why = (d.mx || []).filter(m => m.locked).map(m => m.lock_reason).filter(Boolean)[0];
    parts.push(el('div', { class: 'state-locked' }, 'locked', why ? el('span', { class: 'detail' }, ': ' + why) : null));
  }
  if (d.blocks) parts.push(el('div', { class: 'state-blocked' }, `${d.blocks} blocked, last `, timeEl(d.last_block && d.last_block.time)));
  return parts.length ? parts : ['\u2013'];
}

function destName(d) { return d.domain || (d.mx && d.mx[0] && d.mx[0].name) || '?'; }

function toggle(name) {
  if (state.open.has(name)) state.open.delete(name); else state.open.add(name);
  renderDestinations();
}

function renderDestinations() {
  const f = state.filter.toLowerCase();
  const rows = state.destinations.filter(d => {
    if (!f) return true;
    const hay = [d.domain || '', d.class, LABELS[d.class], SEEN[d.seen] || '', ...(d.mx || []).map(m => m.name)].join(' ').toLowerCase();
    return hay.includes(f);
  });
  rows.sort((a, b) => {
    const x = sortValue(a, state.sortKey), y = sortValue(b, state.sortKey);
    return (x < y ? -1 : x > y ? 1 : 0) * state.sortDir;
  });
  $('dest-body').replaceChildren(...rows.flatMap(d => {
    const name = destName(d), open = state.open.has(name), text = details(d);
    const btn = el('button', { type: 'button', class: 'more', 'aria-expanded': String(open), 'aria-label': 'details of ' + name, title: 'details' }, open ? '\u25BE' : '\u25B8');
    const tr = el('tr', { class: 'dest' + (d.locked ? ' locked' : '') + (open ? ' open' : ''), 'data-domain': name, 'data-class': d.class, 'data-seen': d.seen || '', title: text },
      el('td', { 'data-label': 'Protection' }, btn, badge(d.class, text)),
      el('td', { 'data-label': 'Domain' }, d.domain || el('span', { class: 'mono', title: 'MX host without a known recipient domain' }, name)),
      el('td', { 'data-label': 'Seen', class: 'seen', title: SEEN_HELP[d.seen] || '' }, SEEN[d.seen] || '\u2013'),
      el('td', { 'data-label': 'State', class: 'state' }, ...stateCell(d)),
      el('td', { 'data-label': 'MX hosts', class: 'mono' }, (d.mx || []).map(m => m.name).join(', ')),
      el('td', { 'data-label': 'TLS' }, d.tls_version ? `${d.tls_version} ${d.cipher || ''}` : '\u2013'),
      el('td', { 'data-label': 'Last seen' }, timeEl(d.checked)));
    tr.addEventListener('click', e => { if (!e.target.closest('a, input')) toggle(name); });
    const more = el('tr', { class: 'dest-details', 'data-for': name, hidden: open ? null : '' },
      el('td', { colspan: '7' }, el('pre', {}, text)));
    return [tr, more];
  }));
  $('dest-empty').hidden = state.destinations.length > 0;
}

function setupSorting() {
  for (const th of document.querySelectorAll('#dest-table th[data-sort]')) {
    th.addEventListener('click', () => {
      const key = th.dataset.sort;
      state.sortDir = state.sortKey === key ? -state.sortDir : 1;
      state.sortKey = key;
      for (const o of document.querySelectorAll('#dest-table th[data-sort]'))
        o.setAttribute('aria-sort', o === th ? (state.sortDir > 0 ? 'ascending' : 'descending') : 'none');
      renderDestinations();
    });
  }
  $('dest-filter').addEventListener('input', e => { state.filter = e.target.value; renderDestinations(); });
}

// ---- events, locks, policy ---------------------------------------------------

// What happened, said once: the kind and its verdict as one phrase.
function eventWhat(e) {
  const v = e.verdict || '';
  switch (e.kind) {
    case 'block': return v.includes('perm') ? 'blocked (permanent)' : v.includes('temp') ? 'blocked (temporary)' : 'blocked';
    case 'first-seen': return 'first connection';
    case 'release': return 'released';
    case 'policy': return v === 'refused' ? 'policy refused' : v === 'applied' ? 'policy applied' : 'policy';
    default: return [e.kind, v && !v.startsWith(e.kind || '\0') ? v : ''].filter(Boolean).join(': ');
  }
}

function renderEvents(events) {
  $('events-body').replaceChildren(...events.map(e => el('tr', { class: 'event ' + (e.kind || ''), 'data-id': e.id, 'data-kind': e.kind },
    el('td', { 'data-label': 'Time' }, timeEl(e.time)),
    el('td', { 'data-label': 'What', class: 'what' }, eventWhat(e)),
    el('td', { 'data-label': 'MX', class: 'mono' }, e.mx || e.server || ''),
    el('td', { 'data-label': 'Sender \u2192 recipient', class: 'mono' }, [e.sender, e.recipient].filter(Boolean).join(' \u2192 ')),
    el('td', { 'data-label': 'Rule', class: 'mono' }, e.rule || ''),
    el('td', { 'data-label': 'Reason', class: 'reason' }, e.reason || ''))));
  $('events-empty').hidden = events.length > 0;
}

function renderLocks(locks) {
  $('locks-body').replaceChildren(...locks.map(l => {
    const btn = el('button', { class: 'release', type: 'button', 'data-mx': l.mx }, 'Release');
    btn.addEventListener('click', () => release(l.mx, btn));
    return el('tr', { class: 'lock', 'data-mx': l.mx },
      el('td', { 'data-label': 'MX', class: 'mono' }, l.mx), el('td', { 'data-label': 'Why' }, l.reason || ''),
      el('td', { 'data-label': 'Since' }, timeEl(l.locked_at)), el('td', {}, btn));
  }));
  $('locks-empty').hidden = locks.length > 0;
}

async function release(mx, btn) {
  const token = $('token').value || sessionStorage.getItem('tlsgate-token') || '';
  const msg = $('release-msg');
  if (!token) { msg.textContent = 'Enter the operator token first.'; $('token').focus(); return; }
  sessionStorage.setItem('tlsgate-token', token);
  btn.disabled = true;
  try {
    await api('/api/v1/history/release', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token }, body: JSON.stringify({ mx }) });
    msg.textContent = `Released ${mx}.`;
    refresh();
  } catch (e) {
    msg.textContent = `Release of ${mx} failed: ${e.message}`;
    btn.disabled = false;
  }
}

function renderPolicy(p) {
  const dl = $('policy-info');
  const a = p.applied, r = p.last_refused;
  const items = a ? [
    ['Serial', a.serial], ['Signer key id', a.key_id], ['Applied at', timeEl(a.applied_at)],
    ['Expires', a.expires ? timeEl(a.expires) : 'never'], ['SHA-256', a.sha256],
  ] : [['Applied', 'no signed policy applied: history and DANE rules only']];
  items.push(['Last refused', r ? el('span', {}, timeEl(r.time), `: ${r.reason}`) : 'none']);
  dl.replaceChildren(...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { class: k === 'SHA-256' ? 'mono' : null }, v)]));
}

// ---- check a recipient -----------------------------------------------------------

async function check(ev) {
  ev.preventDefault();
  const list = $('check-input').value.split(/[,;\s]+/).filter(Boolean);
  const out = $('check-result');
  if (!list.length) return;
  const qs = list.map(a => 'address=' + encodeURIComponent(a)).join('&');
  try {
    const r = await api('/api/v1/recipient?' + qs);
    out.replaceChildren(...r.recipients.map(x => el('li', { 'data-address': x.address, 'data-class': x.class },
      badge(x.class, details(x)), ' ', x.address,
      el('span', { class: 'detail' },
        (x.tls_version ? ` \u2013 ${x.tls_version} ${x.cipher || ''}` : '') +
        (x.probe === 'scheduled' ? ' \u2013 a probe is scheduled, ask again in a moment' : '') +
        (x.locked ? ' \u2013 locked: mail waits for an operator' : '') +
        (x.class === 'dane-failing' ? ' \u2013 DANE failing: mail is deferred' : '')))));
  } catch (e) {
    out.replaceChildren(el('li', { class: 'error' }, e.message));
  }
}

// ---- refresh loop ------------------------------------------------------------------

async function refresh() {
  const parts = await Promise.allSettled([
    api('/api/v1/stats'), api('/api/v1/destinations'), api('/api/v1/events?limit=50'),
    api('/api/v1/locks'), api('/api/v1/policy'),
  ]);
  const errors = [];
  const [stats, dest, events, locks, policy] = parts.map(p => {
    if (p.status === 'fulfilled') return p.value;
    errors.push(p.reason.message);
    return null;
  });
  if (stats) renderStats(stats);
  if (dest) { state.destinations = dest.destinations; renderDestinations(); }
  if (events) renderEvents(events.events);
  if (locks) renderLocks(locks.locks);
  if (policy) renderPolicy(policy);
  $('error').textContent = errors.length ? 'Not everything could be loaded: ' + errors.join('; ') : '';
  $('updated').textContent = 'updated ' + fmtTime(Date.now() / 1000) + ', every ' + REFRESH_MS / 1000 + ' s';
  document.body.dataset.state = errors.length ? 'partial' : 'ready';
}

document.addEventListener('DOMContentLoaded', () => {
  setupSorting();
  for (const s of document.querySelectorAll('.legend .badge')) s.replaceWith(badge(s.classList[1]));
  $('tz').textContent = 'Times are local (UTC' + tzOffset(new Date()) + ').';
  $('check-form').addEventListener('submit', check);
  const t = sessionStorage.getItem('tlsgate-token');
  if (t) $('token').value = t;
  refresh();
  setInterval(refresh, REFRESH_MS);
});
