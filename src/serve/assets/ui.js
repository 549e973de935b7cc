// Small DOM helpers: elements are built with text nodes, never from HTML strings, so nothing
// the API returns can become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function badge(word) {
  const w = word || 'unknown';
  return h('span', { class: `badge b-${String(w).replace(/[^a-z-]/g, '')}` }, w);
}

// An API error with its title, detail and field errors; other errors with their message.
export function problemBox(error) {
  const p = error && error.problem ? error.problem : { title: String(error && error.message || error) };
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, p.title || 'Something went wrong'),
    p.detail ? h('p', { class: 'detail' }, p.detail) : null,
    Array.isArray(p.errors) && p.errors.length
      ? h('ul', {}, p.errors.map((e) => h('li', {}, `${e.pointer}: ${e.detail}`)))
      : null);
}

export function showProblem(container, error) {
  container.querySelectorAll(':scope > .problem').forEach((el) => el.remove());
  const box = problemBox(error);
  container.prepend(box);
  return box;
}

export function toast(text) {
  const live = document.getElementById('live');
  const t = h('div', { class: 'toast' }, text);
  live.append(t);
  while (live.children.length > 4) live.firstChild.remove();
  setTimeout(() => t.remove(), 6000);
}

export function time(text) {
  if (!text) return '';
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return text;
  return d.toLocaleString();
}

export function seconds(run) {
  if (!run.started_at) return null;
  const end = run.ended_at ? new Date(run.ended_at) : new Date();
  return Math.max(0, (end - new Date(run.started_at)) / 1000);
}

export function records(run) {
  return (run.streams || []).reduce((n, st) => n + (st.records || 0), 0);
}

export function extractorOf(run) {
  const p = (run.plugins || []).find((x) => x.role === 'extractor');
  return p ? p.plugin : '';
}

export function table(headers, rows, narrow = []) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, headers.map((t, i) => h('th', { scope: 'col', class: narrow.includes(i) ? 'hide-narrow' : null }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { class: narrow.includes(i) ? 'hide-narrow' : null }, c)))))));
}

export function field(label, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  const parts = [h('label', { for: id }, label), input];
  if (help) {
    const hid = `${id}-help`;
    input.setAttribute('aria-describedby', hid);
    parts.push(h('span', { class: 'help', id: hid }, help));
  }
  return h('div', { class: input.type === 'checkbox' ? 'field check' : 'field' }, parts);
}

// A bar chart as SVG: one bar per value (null: no bar), failed ones marked.
export function barChart(title, values, unit, failed = []) {
  const W = 320, H = 140, L = 40, B = 20, T = 10;
  const max = Math.max(1e-9, ...values.filter((v) => v !== null));
  const n = Math.max(values.length, 1);
  const bw = (W - L - 4) / n;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}, ${values.length} runs, highest ${fmt(max)} ${unit}` },
    s('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }),
    s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    s('text', { x: 2, y: T + 8 }, fmt(max)),
    s('text', { x: 2, y: H - B }, '0'),
    s('text', { x: L, y: H - 4 }, 'oldest'),
    s('text', { x: W - 36, y: H - 4 }, 'newest'));
  values.forEach((v, i) => {
    if (v === null) return;
    const hgt = ((H - B - T) * v) / max;
    const rect = s('rect', { class: failed[i] ? 'bar failed' : 'bar', x: L + 2 + i * bw, y: H - B - hgt, width: Math.max(1, bw - 2), height: Math.max(hgt, v > 0 ? 1 : 0) },
      s('title', {}, `${fmt(v)} ${unit}`));
    svg.append(rect);
  });
  return h('figure', { class: 'chart panel' }, h('figcaption', {}, h('strong', {}, title), ` (${unit})`), svg);
}

export function fmt(v) {
  if (v === null || v === undefined) return '';
  if (Math.abs(v) >= 100) return String(Math.round(v));
  return String(Math.round(v * 100) / 100);
}
