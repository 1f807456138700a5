// tlsgate status page. Everything it shows comes from the daemon's own
// JSON API; no external assets. Text from the store (event reasons, host
// names) is only ever set as textContent, never as HTML.
'use strict';

const REFRESH_MS = 5000;
const LABELS = { dane: 'DANE ok', tls: 'TLS', plaintext: 'no TLS', unknown: 'TLS?' };
const RANK = { plaintext: 0, unknown: 1, tls: 2, dane: 3 };
const SVG_NS = 'http://www.w3.org/2000/svg';
// Thumb up (protected), thumb down (no TLS), question mark (unknown).
const ICONS = {
  up: 'M2 21h4V9H2v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L15.17 1 8.59 7.59C8.22 7.95 8 8.45 8 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z',
  down: 'M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2c0 1.1.9 2 2 2h6.31l-.95 4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5c0-1.1-.9-2-2-2zm4 0v12h4V3h-4z',
  unknown: 'M12 2a10 10 0 100 20 10 10 0 000-20zm1 17h-2v-2h2v2zm2.07-7.75l-.9.92C13.45 12.9 13 13.5 13 15h-2v-.5c0-1.1.45-2.1 1.17-2.83l1.24-1.26A1.99 1.99 0 0012 7a2 2 0 00-2 2H8a4 4 0 118 0c0 .88-.36 1.68-.93 2.25z',
};

const state = { destinations: [], sortKey: 'domain', sortDir: 1, filter: '' };

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

function fmtTime(t) {
  if (!t) return '\u2013';
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

function fmtNum(n) { return typeof n === 'number' ? n.toLocaleString() : '\u2013'; }

// The icon a composer would show: a badge with an SVG and its label.
function badge(cls, title) {
  cls = LABELS[cls] ? cls : 'unknown';
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', cls === 'plaintext' ? ICONS.down : cls === 'unknown' ? ICONS.unknown : ICONS.up);
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  const b = el('span', { class: 'badge ' + cls, 'data-class': cls, title: title || LABELS[cls] }, svg, LABELS[cls]);
  return b;
}

// Hover text: everything known about a destination's MX hosts.
function details(d) {
  const lines = [];
  lines.push(`${LABELS[d.class] || 'TLS?'}${d.locked ? ' \u2013 LOCKED (possible downgrade)' : ''}`);
  lines.push(`DNSSEC: ${d.dnssec || 'unknown'}; TLSA: ${d.tlsa || 'not checked'}`);
  if (d.tls_version) lines.push(`last TLS: ${d.tls_version} ${d.cipher || ''}`);
  for (const m of d.mx || []) {
    lines.push('');
    lines.push(`MX ${m.name}: ${m.label}${m.locked ? ' (locked: ' + (m.lock_reason || '') + ')' : ''}`);
    if (m.addresses && m.addresses.length) lines.push(`  addresses: ${m.addresses.join(', ')}`);
    if (m.tls_version) lines.push(`  TLS ${m.tls_version}, cipher ${m.cipher || '?'}`);
    if (m.best_version) lines.push(`  best version seen: ${m.best_version}`);
    lines.push(`  DNSSEC ${m.dnssec}; TLSA ${m.tlsa || 'not checked'}`);
    if (typeof m.tls_count === 'number') lines.push(`  ${m.tls_count} TLS / ${m.plain_count} plaintext connections; last seen ${fmtTime(m.last_seen)}`);
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
      t.textContent = `${new Date(p.t * 1000).toLocaleTimeString()}: ${p[k]} ${k}`;
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
    default: return d.domain || (d.mx && d.mx[0] && d.mx[0].name) || '';
  }
}

function renderDestinations() {
  const f = state.filter.toLowerCase();
  const rows = state.destinations.filter(d => {
    if (!f) return true;
    const hay = [d.domain || '', d.class, LABELS[d.class], ...(d.mx || []).map(m => m.name)].join(' ').toLowerCase();
    return hay.includes(f);
  });
  rows.sort((a, b) => {
    const x = sortValue(a, state.sortKey), y = sortValue(b, state.sortKey);
    return (x < y ? -1 : x > y ? 1 : 0) * state.sortDir;
  });
  $('dest-body').replaceChildren(...rows.map(d => {
    const name = d.domain || (d.mx && d.mx[0] && d.mx[0].name) || '?';
    return el('tr', { class: d.locked ? 'locked dest' : 'dest', 'data-domain': name, 'data-class': d.class },
      el('td', {}, badge(d.class, details(d))),
      el('td', {}, d.domain || el('span', { class: 'mono', title: 'MX host without a known recipient domain' }, name)),
      el('td', { class: 'mono' }, (d.mx || []).map(m => m.name).join(', ')),
      el('td', {}, d.tls_version ? `${d.tls_version} ${d.cipher || ''}` : '\u2013'),
      el('td', {}, fmtTime(d.checked)));
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

function renderEvents(events) {
  $('events-body').replaceChildren(...events.map(e => el('tr', { class: 'event ' + (e.kind || ''), 'data-id': e.id, 'data-kind': e.kind },
    el('td', {}, fmtTime(e.time)),
    el('td', {}, e.kind || '', e.verdict ? el('div', { class: 'detail' }, e.verdict) : null),
    el('td', { class: 'mono' }, e.mx || e.server || ''),
    el('td', { class: 'mono' }, [e.sender, e.recipient].filter(Boolean).join(' \u2192 ')),
    el('td', { class: 'mono' }, e.rule || ''),
    el('td', { class: 'reason' }, e.reason || ''))));
  $('events-empty').hidden = events.length > 0;
}

function renderLocks(locks) {
  $('locks-body').replaceChildren(...locks.map(l => {
    const btn = el('button', { class: 'release', type: 'button', 'data-mx': l.mx }, 'Release');
    btn.addEventListener('click', () => release(l.mx, btn));
    return el('tr', { class: 'lock', 'data-mx': l.mx },
      el('td', { class: 'mono' }, l.mx), el('td', {}, l.reason || ''), el('td', {}, fmtTime(l.locked_at)), el('td', {}, btn));
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
    ['Serial', a.serial], ['Signer key id', a.key_id], ['Applied at', fmtTime(a.applied_at)],
    ['Expires', a.expires ? fmtTime(a.expires) : 'never'], ['SHA-256', a.sha256],
  ] : [['Applied', 'no signed policy applied: history and DANE rules only']];
  items.push(['Last refused', r ? `${fmtTime(r.time)}: ${r.reason}` : 'none']);
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
        (x.locked ? ' \u2013 locked: mail waits for an operator' : '')))));
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
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString() + ', every ' + REFRESH_MS / 1000 + ' s';
  document.body.dataset.state = errors.length ? 'partial' : 'ready';
}

document.addEventListener('DOMContentLoaded', () => {
  setupSorting();
  for (const s of document.querySelectorAll('.legend .badge')) s.replaceWith(badge(s.classList[1]));
  $('check-form').addEventListener('submit', check);
  const t = sessionStorage.getItem('tlsgate-token');
  if (t) $('token').value = t;
  refresh();
  setInterval(refresh, REFRESH_MS);
});
