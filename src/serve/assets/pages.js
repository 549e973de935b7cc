// The overview, the source list, the flow map, runs with their logs and the audit log.

import { get, query, onEvent } from './api.js';
import { h, s, badge, table, field, showProblem, time, seconds, records, extractorOf, fmt, toast } from './ui.js';

// Listens to an event while `view` is on the page.
export function live(view, kind, f) {
  const off = onEvent(kind, (...args) => {
    if (!view.isConnected) { off(); return; }
    f(...args);
  });
  return off;
}

function debounce(f, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}

const sourceLink = (name) => h('a', { href: `#/source/${encodeURIComponent(name)}` }, name);
const runLink = (id) => (id ? h('a', { href: `#/run/${encodeURIComponent(id)}` }, String(id).slice(0, 8)) : '');

function runRows(items) {
  return items.map((r) => [
    runLink(r.run_id),
    extractorOf(r) ? sourceLink(extractorOf(r)) : (r.state_id || ''),
    badge(r.status),
    time(r.started_at),
    `${fmt(seconds(r))} s`,
    String(records(r)),
  ]);
}
const RUN_HEADERS = ['Run', 'Source', 'Status', 'Started', 'Duration', 'Records'];

// ----- overview -----

export async function overviewPage(view) {
  view.append(h('h1', {}, 'Overview'));
  const counts = h('section', { 'aria-labelledby': 'h-status' });
  const attention = h('section', { 'aria-labelledby': 'h-attention' });
  const runs = h('section', { 'aria-labelledby': 'h-runs' });
  const feed = h('ul', { id: 'feed', class: 'muted' });
  view.append(counts, attention, runs, h('section', { 'aria-labelledby': 'h-live' }, h('h2', { id: 'h-live' }, 'Live'), feed));
  feed.append(h('li', {}, 'Listening for runs…'));

  async function loadOverview() {
    const o = await get('/api/overview');
    counts.replaceChildren(
      h('h2', { id: 'h-status' }, `Sources by status (${o.total})`),
      h('div', { class: 'cards' }, o.by_status.map((c) => h('a', { class: 'card', href: `#/sources?status=${c.status}` },
        h('span', { class: 'n' }, String(c.count)), badge(c.status)))),
      h('h2', {}, 'Health of extractors (last 24 hours)'),
      h('div', { class: 'cards' }, o.by_verdict.map((c) => h('div', { class: 'card' }, h('span', { class: 'n' }, String(c.count)), badge(c.verdict)))));
    attention.replaceChildren(h('h2', { id: 'h-attention' }, 'Needs a look'),
      o.attention.length
        ? table(['Source', 'Status', 'Health', 'Why'], o.attention.map((a) => [sourceLink(a.source), badge(a.status), badge(a.verdict), a.reason || '']))
        : h('p', {}, 'Nothing failing or stale.'),
      ...(o.failed_deliveries.length
        ? [h('h3', {}, 'Notifications not delivered (last 24 hours)'),
          table(['Receiver', 'Failed', 'Deliveries', 'Last error'], o.failed_deliveries.map((f) => [f.receiver, String(f.failed), String(f.deliveries), f.last_error || '']))]
        : []));
  }
  async function loadRuns() {
    const page = await get('/api/runs?limit=10');
    runs.replaceChildren(h('h2', { id: 'h-runs' }, 'Recent runs'),
      page.items.length ? table(RUN_HEADERS, runRows(page.items), [3, 5]) : h('p', {}, 'No runs yet.'),
      h('p', {}, h('a', { href: '#/runs' }, 'All runs')));
  }
  await Promise.all([loadOverview(), loadRuns()]);
  // The overview's content is on screen (benches/dashboard.sh reads this mark).
  performance.mark('dsm:content');
  const refresh = debounce(() => { loadOverview().catch((e) => showProblem(view, e)); loadRuns().catch((e) => showProblem(view, e)); }, 400);
  const note = (text) => {
    if (feed.firstChild && feed.firstChild.textContent === 'Listening for runs…') feed.replaceChildren();
    feed.prepend(h('li', {}, `${new Date().toLocaleTimeString()} ${text}`));
    while (feed.children.length > 12) feed.lastChild.remove();
  };
  live(view, 'run_started', (d) => { note(`run ${String(d.run_id).slice(0, 8)} of ${d.source} started`); refresh(); });
  live(view, 'run_finished', (d) => { note(`run ${String(d.run_id).slice(0, 8)} finished: ${d.status}`); refresh(); });
  live(view, 'source_status', (d) => { note(`${d.source} is now ${d.status}`); refresh(); });
}

// ----- sources -----

const STATUSES = ['', 'active', 'inactive', 'syncing', 'error', 'maintenance'];
const TYPES = ['', 'file', 'database', 'api', 'warehouse', 'other'];

function select(id, options, value, label) {
  const el = h('select', { id, name: id }, options.map((o) => h('option', { value: o, selected: o === (value || '') }, o || label)));
  return el;
}

export async function sourcesPage(view, params) {
  view.append(h('h1', {}, 'Sources'));
  const q = h('input', { id: 'q', type: 'search', name: 'q', value: params.q || '', placeholder: 'name, provider, label…' });
  const status = select('status', STATUSES, params.status, 'any status');
  const type = select('type', TYPES, params.type, 'any type');
  const kind = select('plugin_type', ['', 'extractor', 'loader'], params.plugin_type, 'extractors and loaders');
  const provider = h('input', { id: 'provider', name: 'provider', value: params.provider || '', size: 12 });
  const label = h('input', { id: 'label', name: 'label', value: params.label || '', size: 12 });
  const form = h('form', { class: 'filters', role: 'search', id: 'filters' },
    field('Search', q), field('Status', status), field('Type', type), field('Plugin type', kind),
    field('Provider', provider), field('Labels', label, 'comma-separated'),
    h('button', { type: 'submit' }, 'Filter'));
  const results = h('div', { id: 'results', 'aria-live': 'polite' });
  view.append(form, results);
  const filters = () => ({ q: q.value.trim(), status: status.value, type: type.value, plugin_type: kind.value, provider: provider.value.trim(), label: label.value.trim() });
  const apply = () => {
    const hash = `#/sources${query(filters())}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
    load([]);
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  for (const el of [status, type, kind]) el.addEventListener('change', apply);
  const typed = debounce(apply, 250);
  for (const el of [q, provider, label]) el.addEventListener('input', typed);

  let seq = 0;
  async function load(cursors) {
    const mine = ++seq;
    const cursor = cursors[cursors.length - 1];
    const page = await get(`/api/sources${query({ ...filters(), limit: 50, cursor })}`).catch((e) => { showProblem(results, e); return null; });
    if (!page || mine !== seq) return;
    const rows = page.items.map((it) => {
      const health = h('span', { class: 'health', 'data-source': it.name }, it.plugin_type === 'extractor' ? '…' : '');
      return [sourceLink(it.name), it.plugin_type, it.type, it.provider || '', h('span', {}, badge(it.status), it.reason ? h('span', { class: 'muted' }, ` ${it.reason}`) : null), runLink(it.last_run), health];
    });
    const pager = h('div', { class: 'pager' },
      h('button', { type: 'button', class: 'secondary', disabled: cursors.length === 0, onclick: () => load(cursors.slice(0, -1)) }, 'Previous page'),
      h('span', { class: 'muted' }, `Page ${cursors.length + 1}`),
      h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => load([...cursors, page.next_cursor]) }, 'Next page'));
    results.replaceChildren(
      page.items.length ? table(['Name', 'Plugin', 'Type', 'Provider', 'Status', 'Last run', 'Health'], rows, [1, 3, 5]) : h('p', { class: 'empty' }, 'No source matches these filters.'),
      pager);
    if (!performance.getEntriesByName('dsm:content').length) performance.mark('dsm:content');
    // Health verdicts fill in after the list is on screen, a few at a time.
    const cells = [...results.querySelectorAll('.health[data-source]')].filter((c) => c.textContent === '…');
    const next = async () => {
      const cell = cells.shift();
      if (!cell || mine !== seq) return;
      try {
        const hl = await get(`/api/sources/${encodeURIComponent(cell.dataset.source)}/health`);
        cell.replaceChildren(badge(hl.verdict));
        cell.title = hl.reason || '';
      } catch { cell.textContent = ''; }
      await next();
    };
    await Promise.all([next(), next(), next(), next()]);
  }
  await load([]);
}

// ----- flows -----

export async function flowsPage(view) {
  view.append(h('h1', {}, 'Flows'));
  const flows = await get('/api/flows');
  if (!flows.length) { view.append(h('p', {}, 'The project has no flows: add a schedule, a job, or an extractor with a default loader.')); return; }
  // Nodes by role in columns: sources → mappers → destinations; an edge per step pair.
  const col = (role) => (role === 'extractor' ? 0 : role === 'loader' ? 2 : 1);
  const nodes = new Map();
  const edges = new Map();
  for (const f of flows) {
    for (const chain of f.chains) {
      chain.forEach((st, i) => {
        const key = `${col(st.role)}:${st.name}`;
        if (!nodes.has(key)) nodes.set(key, { name: st.name, role: st.role, col: col(st.role), inputs: new Set() });
        if (i > 0) {
          const from = `${col(chain[i - 1].role)}:${chain[i - 1].name}`;
          edges.set(`${from}→${key}`, [from, key]);
          nodes.get(key).inputs.add(from);
        }
      });
    }
  }
  const byCol = [[], [], []];
  for (const [key, n] of nodes) byCol[n.col].push(key);
  byCol.forEach((c) => c.sort());
  const W = 900, BW = 220, BH = 34, GAP = 14, X = [10, 340, 670];
  const rows = Math.max(...byCol.map((c) => c.length), 1);
  const H = 40 + rows * (BH + GAP);
  const pos = new Map();
  byCol.forEach((c, ci) => c.forEach((key, ri) => pos.set(key, { x: X[ci], y: 30 + ri * (BH + GAP) })));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Flow map: ${byCol[0].length} sources, ${byCol[1].length} mappers, ${byCol[2].length} destinations` },
    s('text', { x: X[0], y: 16 }, 'Sources'), s('text', { x: X[1], y: 16 }, 'Mappers and steps'), s('text', { x: X[2], y: 16 }, 'Destinations'));
  for (const [from, to] of edges.values()) {
    const a = pos.get(from), b = pos.get(to);
    const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2, mx = (x1 + x2) / 2;
    svg.append(s('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  for (const [key, n] of nodes) {
    const p = pos.get(key);
    const merge = n.inputs.size > 1;
    const label = n.name.length > 28 ? `${n.name.slice(0, 27)}…` : n.name;
    svg.append(s('g', { class: merge ? 'node merge' : 'node' },
      s('rect', { x: p.x, y: p.y, width: BW, height: BH, rx: 5 }),
      s('text', { x: p.x + 8, y: p.y + 21 }, merge ? `${label} (merge of ${n.inputs.size})` : label),
      s('title', {}, `${n.role} ${n.name}${merge ? `: streams of ${n.inputs.size} inputs merge here` : ''}`)));
  }
  view.append(h('figure', { class: 'flowmap panel' }, svg, h('figcaption', { class: 'muted' }, 'A thick outline marks a merge: several inputs flow into one step.')));
  const deps = flows.filter((f) => f.depends_on.length);
  view.append(h('h2', {}, 'Dependencies between jobs'));
  if (deps.length) {
    const names = [...new Set(flows.filter((f) => f.kind !== 'extractor' || f.depends_on.length).map((f) => f.name).concat(deps.flatMap((f) => f.depends_on)))].sort();
    const level = new Map();
    const depth = (n, seen = new Set()) => {
      if (level.has(n)) return level.get(n);
      if (seen.has(n)) return 0;
      seen.add(n);
      const f = flows.find((x) => x.name === n);
      const d = f && f.depends_on.length ? 1 + Math.max(...f.depends_on.map((x) => depth(x, seen))) : 0;
      level.set(n, d);
      return d;
    };
    names.forEach((n) => depth(n));
    const cols = new Map();
    for (const n of names) { const l = level.get(n); if (!cols.has(l)) cols.set(l, []); cols.get(l).push(n); }
    const dpos = new Map();
    for (const [l, list] of cols) list.forEach((n, i) => dpos.set(n, { x: 10 + l * 250, y: 10 + i * (BH + GAP) }));
    const DH = 20 + Math.max(...[...cols.values()].map((l) => l.length)) * (BH + GAP);
    const dsvg = s('svg', { viewBox: `0 0 ${Math.max(W, 20 + cols.size * 250)} ${DH}`, role: 'img', 'aria-label': `${deps.length} flows depend on others` });
    for (const f of deps) for (const d of f.depends_on) {
      const a = dpos.get(d), b = dpos.get(f.name);
      if (a && b) dsvg.append(s('path', { class: 'dep', d: `M${a.x + 200},${a.y + BH / 2} L${b.x},${b.y + BH / 2}` }));
    }
    for (const [n, p] of dpos) dsvg.append(s('g', { class: 'node' }, s('rect', { x: p.x, y: p.y, width: 200, height: BH, rx: 5 }), s('text', { x: p.x + 8, y: p.y + 21 }, n)));
    view.append(h('figure', { class: 'flowmap panel' }, dsvg));
  } else {
    view.append(h('p', {}, 'No flow depends on another.'));
  }
  view.append(h('h2', {}, 'Every flow'), table(['Flow', 'Kind', 'Every', 'Steps', 'Status'], flows.map((f) => [
    f.name, f.kind, f.interval || '', f.chains.map((c) => c.map((st) => st.name).join(' → ')).join('; '), f.status ? badge(f.status) : '',
  ]), [2]));
}

// ----- runs -----

export async function runsPage(view, params) {
  view.append(h('h1', {}, 'Runs'));
  const source = h('input', { id: 'run-source', name: 'source', value: params.source || '' });
  const status = select('run-status', ['', 'running', 'success', 'failed', 'killed'], params.status, 'any status');
  const form = h('form', { class: 'filters' }, field('Source', source), field('Status', status), h('button', { type: 'submit' }, 'Filter'));
  const results = h('div', { 'aria-live': 'polite' });
  view.append(form, results);
  async function load(cursors) {
    const cursor = cursors[cursors.length - 1];
    const page = await get(`/api/runs${query({ source: source.value.trim(), status: status.value, limit: 50, cursor })}`);
    results.replaceChildren(
      page.items.length ? table(RUN_HEADERS, runRows(page.items), [3, 5]) : h('p', {}, 'No runs match.'),
      h('div', { class: 'pager' },
        h('button', { type: 'button', class: 'secondary', disabled: !cursors.length, onclick: () => load(cursors.slice(0, -1)).catch((e) => showProblem(results, e)) }, 'Previous page'),
        h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => load([...cursors, page.next_cursor]).catch((e) => showProblem(results, e)) }, 'Next page')));
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); load([]).catch((err) => showProblem(results, err)); });
  live(view, 'run_finished', () => load([]).catch(() => {}));
  await load([]);
}

export async function runPage(view, params, [id]) {
  const run = await get(`/api/runs/${encodeURIComponent(id)}`);
  view.append(h('h1', {}, `Run ${String(run.run_id).slice(0, 8)} `, badge(run.status)),
    table(['', ''], [
      ['Run id', String(run.run_id)], ['Flow', run.state_id || ''], ['Source', extractorOf(run) ? sourceLink(extractorOf(run)) : ''],
      ['Started', time(run.started_at)], ['Ended', time(run.ended_at)], ['Duration', `${fmt(seconds(run))} s`],
      ['Records', String(records(run))], ['Error', run.error || ''],
    ]),
    h('h2', {}, 'Streams'),
    (run.streams || []).length ? table(['Stream', 'Records', 'Bytes'], run.streams.map((st) => [st.stream, String(st.records), String(st.bytes)])) : h('p', {}, 'No records moved.'),
    h('h2', {}, 'Log (last lines, secrets redacted)'),
    h('pre', { class: 'log', tabindex: 0 }, (run.log_tail || []).join('\n') || '(empty)'));
  live(view, 'run_finished', (d) => { if (d.run_id === run.run_id) toast(`run finished: ${d.status}`); });
}

// ----- audit -----

export async function auditPage(view) {
  view.append(h('h1', {}, 'Audit log'));
  const results = h('div');
  view.append(results);
  async function load(cursors) {
    const cursor = cursors[cursors.length - 1];
    const page = await get(`/api/audit${query({ limit: 50, cursor })}`);
    results.replaceChildren(
      table(['When', 'Who', 'Command', 'Action', 'Targets'], page.items.map((e) => [time(e.at), e.os_user || '', e.command || '', e.action || '', (e.targets || []).join(', ')]), [2]),
      h('div', { class: 'pager' },
        h('button', { type: 'button', class: 'secondary', disabled: !cursors.length, onclick: () => load(cursors.slice(0, -1)) }, 'Previous page'),
        h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => load([...cursors, page.next_cursor]) }, 'Next page')));
  }
  await load([]);
}
