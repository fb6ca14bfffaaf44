// The page's script (see edge/src/worker/page.rs): calls this origin's API with the token from
// the Access fields and polls the edge's status. No framework, nothing from elsewhere.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const WINDOW_MS = 60000;
const POLL_MS = 2000;

function el(tag, attrs, ...children) {
  const node = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// --- tokens: kept in this tab only ----------------------------------------------------------
for (const [id, key] of [['token', 'tandem.token'], ['operator', 'tandem.operator']]) {
  const input = $(id);
  input.value = sessionStorage.getItem(key) || '';
  input.addEventListener('input', () => {
    // A pasted `token: eyJ…` line from scripts/up.sh works as is.
    sessionStorage.setItem(key, input.value.trim().replace(/^token:\s*/, ''));
  });
}
const bearer = (key) => {
  const t = sessionStorage.getItem(key);
  return t ? { Authorization: 'Bearer ' + t } : {};
};

// --- calls ----------------------------------------------------------------------------------
async function call(method, path, body, extra) {
  const headers = { ...bearer('tandem.token'), ...extra };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const started = performance.now();
  try {
    const r = await fetch(path, { method, headers, body, cache: 'no-store' });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
    return { status: r.status, json, headers: r.headers, ms: performance.now() - started };
  } catch (e) {
    return { status: 0, json: null, headers: new Headers(), ms: performance.now() - started, failure: String(e) };
  }
}

function describeError(res) {
  if (res.status === 0) return 'Network error: ' + res.failure;
  const err = res.json && res.json.error;
  const code = err ? err.code : 'http_' + res.status;
  const message = err ? err.message : 'unexpected answer';
  const prefix = res.status === 401 ? 'Token needed or invalid. ' : '';
  return `${prefix}${res.status} ${code}: ${message}` + (err && err.request_id ? ` (request ${err.request_id})` : '');
}

function meta(res) {
  const timing = res.headers.get('server-timing') || '';
  const edgeMs = /dur=([\d.]+)/.exec(timing);
  const facts = [
    ['region', res.headers.get('x-served-by') || '—'],
    ['attempts', res.headers.get('x-edge-attempts') || '—'],
    ['latency', Math.round(res.ms) + ' ms' + (edgeMs ? ` (edge ${Math.round(+edgeMs[1])} ms)` : '')],
  ];
  return el('p', { class: 'meta' }, ...facts.map(([k, v]) => el('span', { 'data-fact': k }, k + ': ', el('b', {}, v))));
}

function itemView(item) {
  const dl = el('dl', { class: 'item' });
  const keys = ['item_id', 'region', 'updated_at', 'version', ...Object.keys(item).filter((k) =>
    !['item_id', 'region', 'updated_at', 'version'].includes(k)).sort()];
  for (const k of keys) {
    if (!(k in item)) continue;
    const v = item[k];
    dl.append(el('dt', {}, k), el('dd', { 'data-key': k }, typeof v === 'string' ? v : JSON.stringify(v)));
  }
  return dl;
}

function listView(items) {
  if (!items.length) return el('p', {}, 'No items yet.');
  return el('ul', { class: 'list' }, ...items.map((i) => el('li', {},
    el('b', {}, i.item_id), ` ${i.region || '?'} · v${i.version ?? '?'} · ${i.updated_at || ''}`)));
}

function show(title, res, render) {
  const ok = res.status >= 200 && res.status < 300;
  const entry = el('li', { class: ok ? 'ok' : 'error' },
    el('h3', {}, (ok ? '' : 'Failed: ') + title), meta(res),
    ok ? render(res.json) : el('p', { class: 'message' }, describeError(res)));
  const list = $('results');
  list.prepend(entry);
  while (list.children.length > 8) list.lastElementChild.remove();
}

// A create keeps its Idempotency-Key until it gets a definite answer, so sending the same
// create again after a network error, 409, 429 or 5xx cannot store it twice.
let pending = null;
$('create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = {};
  const id = $('create-id').value.trim();
  const note = $('create-note').value;
  if (id) body.item_id = id;
  if (note) body.note = note;
  const text = JSON.stringify(body);
  if (!pending || pending.text !== text) pending = { text, key: crypto.randomUUID() };
  const res = await call('POST', '/items', text, { 'Idempotency-Key': pending.key });
  if (!(res.status === 0 || res.status === 409 || res.status === 429 || res.status >= 500)) pending = null;
  show('POST /items', res, itemView);
  if (res.status === 201) {
    $('fetch-id').value = res.json.item_id;
    $('create-id').value = $('create-note').value = '';
  }
});

$('fetch-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = $('fetch-id').value.trim();
  show(`GET /items/${id}`, await call('GET', '/items/' + encodeURIComponent(id)), itemView);
});

$('list').addEventListener('click', async () => {
  show('GET /items?limit=20', await call('GET', '/items?limit=20'), (j) => listView(j.items || []));
});

// --- live panel -----------------------------------------------------------------------------
const samplesBy = new Map(); // region name -> [{t, ms, bad}], the last minute

function note(text) {
  if ($('panel-note').textContent !== text) $('panel-note').textContent = text; // announce changes only
}

function stateOf(region, nowMs) {
  const s = region.state;
  if (s === 'healthy') return { key: 'healthy', text: '✓ Healthy', bad: false };
  if (s === 'drained') return { key: 'drained', text: '⚠ Drained: no traffic sent', bad: true };
  if (s && s.ejected) {
    const secs = Math.max(0, Math.ceil((s.ejected.until_ms - nowMs) / 1000));
    return { key: 'ejected', text: `✕ Ejected: trial in ${secs} s`, bad: true };
  }
  return { key: 'trial', text: '↻ Trial: one request decides', bad: true };
}

function sparkline(samples, now, top) {
  const w = 240, h = 40;
  const max = top * 1.15;
  const x = (t) => ((t - (now - WINDOW_MS)) / WINDOW_MS * w).toFixed(1);
  const y = (ms) => (h - ms / max * h).toFixed(1);
  const svg = el('svg:svg', { viewBox: `0 0 ${w} ${h}`, class: 'spark', 'aria-hidden': 'true', focusable: 'false' });
  // Each poll's state stands for the interval since the previous poll.
  samples.forEach((s, i) => {
    if (!s.bad) return;
    const from = Math.max(i ? samples[i - 1].t : s.t - POLL_MS, now - WINDOW_MS);
    svg.append(el('svg:rect', { x: x(from), y: 0, width: x(s.t) - x(from), height: h, class: 'out' }));
  });
  const measured = samples.filter((s) => s.ms != null);
  if (measured.length) {
    svg.append(el('svg:polyline', { points: measured.map((s) => `${x(s.t)},${y(s.ms)}`).join(' '), class: 'line' }));
    const last = measured[measured.length - 1];
    svg.append(el('svg:circle', { cx: x(last.t), cy: y(last.ms), r: 2.5, class: 'dot' }));
  }
  return svg;
}

function drawRegions(report) {
  const now = Date.now();
  const list = $('regions');
  list.replaceChildren();
  for (const r of report.regions || []) {
    const samples = (samplesBy.get(r.name) || []).filter((s) => s.t > now - WINDOW_MS);
    samples.push({ t: now, ms: r.ewma_latency_ms, bad: stateOf(r, report.now_ms).bad });
    samplesBy.set(r.name, samples);
  }
  // One scale for every region, so their lines compare.
  const top = Math.max(10, ...[...samplesBy.values()].flat().map((s) => s.ms || 0));
  for (const r of report.regions || []) {
    const st = stateOf(r, report.now_ms);
    const samples = samplesBy.get(r.name);
    const ms = r.ewma_latency_ms == null ? 'not measured' : Math.round(r.ewma_latency_ms) + ' ms';
    const probe = r.last_probe ? `last probe ${r.last_probe.status ?? 'no answer'}` : 'not probed yet';
    list.append(el('li', { class: 'region ' + (st.bad ? 'bad' : 'good'), 'data-region': r.name, 'data-state': st.key },
      el('h3', {}, r.name),
      el('p', { class: 'state' }, st.text),
      el('p', { class: 'hint' }, `latency ${ms} · ${probe} · failures in a row ${r.consecutive_failures}`),
      sparkline(samples, now, top)));
  }
  const out = (report.regions || []).filter((r) => stateOf(r, report.now_ms).bad).map((r) => r.name);
  note(out.length ? `Out of service: ${out.join(', ')}.` : 'Every region is in service.');
}

let polling = false;
async function poll() {
  if (polling || document.hidden) return;
  polling = true;
  try {
    const r = await fetch('/_edge/status', { headers: bearer('tandem.operator'), cache: 'no-store' });
    if (r.status === 401) note('The operator token is needed for the live panel.');
    else if (!r.ok) note(`The edge's status answered ${r.status}.`);
    else drawRegions(await r.json());
  } catch (e) {
    note('The edge cannot be reached: ' + e);
  } finally {
    polling = false;
  }
}
poll();
setInterval(poll, POLL_MS);
