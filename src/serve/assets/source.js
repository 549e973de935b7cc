// One source: its settings (sensitive ones only as set / not set), health charts from its
// run history, recent runs, "Test connection" and "Sync now" with live progress, credential
// entry, and status changes with a reason.

import { get, post } from './api.js';
import { h, badge, table, field, showProblem, barChart, time, seconds, records, fmt, toast } from './ui.js';
import { live } from './pages.js';

function settingValue(st) {
  if (st.sensitive) return badge(st.is_set ? 'set' : 'not set');
  if (st.value === null || st.value === undefined) return h('span', { class: 'muted' }, 'not set');
  const text = typeof st.value === 'string' ? st.value : JSON.stringify(st.value);
  return h('code', {}, text.length > 200 ? `${text.slice(0, 199)}…` : text);
}

export async function sourcePage(view, params, [name]) {
  const path = `/api/sources/${encodeURIComponent(name)}`;
  const src = await get(path);
  const heading = h('h1', {}, `${src.name} `, badge(src.status));
  const reason = h('p', { id: 'status-reason' }, src.reason ? `Why: ${src.reason}` : '');
  view.append(heading, reason,
    h('p', { class: 'muted', id: 'source-about' }, [src.plugin_type, src.type, src.provider, src.category].filter(Boolean).join(' · '),
      (src.labels || []).length ? ` · labels: ${src.labels.join(', ')}` : '',
      ` · organisation: ${src.organisation || 'the platform'}`));

  // ----- actions -----
  const actions = h('section', { class: 'panel', 'aria-labelledby': 'h-actions' }, h('h2', { id: 'h-actions' }, 'Actions'));
  const result = h('div', { id: 'action-result', 'aria-live': 'polite' });
  const testBtn = h('button', { type: 'button', id: 'test' }, 'Test connection');
  const syncBtn = h('button', { type: 'button', id: 'sync' }, 'Sync now');
  actions.append(h('div', { class: 'row' }, testBtn, src.plugin_type === 'extractor' ? syncBtn : null), result);
  view.append(actions);

  testBtn.addEventListener('click', async () => {
    testBtn.disabled = true;
    result.replaceChildren(h('p', { class: 'progress', id: 'test-progress' }, 'Testing the connection…'));
    try {
      const doc = await post(`${path}/test`);
      result.replaceChildren(h('p', { class: 'progress', id: 'test-result' }, 'Connection test: ', badge(doc.succeeded ? 'passed' : 'failed'),
        ` (${doc.passed} passed, ${doc.failed} failed, ${doc.skipped} skipped)`),
      table(['Plugin', 'Test', 'Result', 'Seconds', 'Why'], doc.results.map((r) => [r.plugin, r.test, badge(r.status), fmt(r.duration_seconds), r.reason || ''])));
    } catch (e) {
      result.replaceChildren();
      showProblem(result, e);
    } finally {
      testBtn.disabled = false;
    }
  });

  let watching = null;
  const progress = new Map();
  syncBtn.addEventListener('click', async () => {
    syncBtn.disabled = true;
    progress.clear();
    result.replaceChildren(h('p', { class: 'progress', id: 'sync-progress' }, 'Starting the sync…'));
    try {
      const started = await post(`${path}/sync`);
      watching = started.run_id;
      result.replaceChildren(h('p', { class: 'progress', id: 'sync-progress' }, `Sync running (run ${String(watching).slice(0, 8)})…`),
        h('ul', { id: 'sync-streams' }));
    } catch (e) {
      syncBtn.disabled = false;
      result.replaceChildren();
      showProblem(result, e);
    }
  });
  live(view, 'run_progress', (d) => {
    if (d.run_id !== watching) return;
    progress.set(d.stream, d.records);
    const list = result.querySelector('#sync-streams');
    if (list) list.replaceChildren(...[...progress].map(([st, n]) => h('li', {}, `${st}: ${n} records`)));
  });
  live(view, 'run_finished', (d) => {
    if (d.run_id !== watching) { loadRuns().catch(() => {}); return; }
    watching = null;
    syncBtn.disabled = false;
    const p = result.querySelector('#sync-progress');
    if (p) p.replaceChildren('Sync finished: ', h('span', { id: 'sync-result' }, badge(d.status)), ' ', h('a', { href: `#/run/${encodeURIComponent(d.run_id)}` }, 'see its log'));
    loadRuns().catch((e) => showProblem(view, e));
  });
  live(view, 'source_status', (d) => {
    if (d.source !== src.name) return;
    heading.replaceChildren(`${src.name} `, badge(d.status));
  });

  // ----- status -----
  const statusSel = h('select', { id: 'new-status' }, ['active', 'inactive', 'maintenance'].map((s) => h('option', { value: s, selected: s === src.status }, s === 'inactive' ? 'inactive (disabled)' : s)));
  const why = h('input', { id: 'status-why', name: 'reason', size: 30, maxlength: 1000 });
  const statusForm = h('form', { class: 'panel', id: 'status-form', 'aria-labelledby': 'h-status' },
    h('h2', { id: 'h-status' }, 'Status'),
    h('div', { class: 'filters' }, field('Set status to', statusSel), field('Reason', why, 'Required to disable or for maintenance; kept in the history.'),
      h('button', { type: 'submit' }, 'Apply')));
  statusForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const entry = await post(`${path}/status`, { status: statusSel.value, reason: why.value || null });
      heading.replaceChildren(`${src.name} `, badge(entry.status));
      reason.textContent = entry.reason ? `Why: ${entry.reason}` : '';
      why.value = '';
      statusForm.querySelectorAll('.problem').forEach((x) => x.remove());
      toast(`${src.name} is now ${entry.status}`);
    } catch (err) {
      showProblem(statusForm, err);
    }
  });
  view.append(statusForm);

  // ----- settings and credentials -----
  view.append(h('h2', {}, 'Settings'),
    src.settings.length ? table(['Setting', 'Value', 'Kind'], src.settings.map((st) => [st.name, settingValue(st), st.sensitive ? 'sensitive' : (st.kind || '')])) : h('p', {}, 'No settings declared or configured.'));
  const sensitive = src.settings.filter((st) => st.sensitive);
  if (sensitive.length) {
    const inputs = sensitive.map((st) => h('input', { type: 'password', id: `cred-${st.name}`, name: st.name, autocomplete: 'new-password' }));
    const credForm = h('form', { class: 'panel', id: 'cred-form', 'aria-labelledby': 'h-cred' },
      h('h2', { id: 'h-cred' }, 'Credentials'),
      h('p', { class: 'help' }, 'Stored values are never shown. Type a new value to set or rotate one; leave the others empty.'),
      sensitive.map((st, i) => field(`${st.name} (${st.is_set ? 'set' : 'not set'})`, inputs[i])),
      h('button', { type: 'submit' }, 'Save credentials'));
    credForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const settings = {};
      inputs.forEach((inp) => { if (inp.value) settings[inp.name] = inp.value; });
      try {
        const done = await post(`${path}/credentials`, { settings });
        inputs.forEach((inp) => { inp.value = ''; });
        credForm.querySelectorAll('.problem, .notice').forEach((x) => x.remove());
        credForm.append(h('p', { class: 'notice', id: 'cred-saved' }, `Saved: ${done.settings.join(', ')}`));
      } catch (err) {
        inputs.forEach((inp) => { inp.value = ''; });
        showProblem(credForm, err);
      }
    });
    view.append(credForm);
  }

  // ----- health charts and runs -----
  const charts = h('section', { id: 'charts', 'aria-labelledby': 'h-health' });
  const runs = h('section', { id: 'runs', 'aria-labelledby': 'h-runs' });
  view.append(charts, runs);
  async function loadRuns() {
    if (src.plugin_type !== 'extractor') { charts.replaceChildren(); runs.replaceChildren(); return; }
    const page = await get(`/api/runs?source=${encodeURIComponent(src.name)}&limit=50`);
    const finished = page.items.filter((r) => r.status !== 'running').reverse();
    const failed = finished.map((r) => r.status === 'failed' || r.status === 'killed');
    const rate = finished.map((_, i) => {
      const window = failed.slice(Math.max(0, i - 4), i + 1);
      return (100 * window.filter(Boolean).length) / window.length;
    });
    charts.replaceChildren(h('h2', { id: 'h-health' }, `Health over the last ${finished.length} runs`),
      finished.length
        ? h('div', { class: 'charts' },
          barChart('Throughput', finished.map((r) => { const t = seconds(r); return t ? records(r) / t : records(r); }), 'records/s', failed),
          barChart('Duration', finished.map((r) => seconds(r)), 's', failed),
          barChart('Error rate (last 5 runs)', rate, '%', failed))
        : h('p', {}, 'No finished runs yet: the charts appear after the first sync.'));
    runs.replaceChildren(h('h2', { id: 'h-runs' }, 'Recent runs'),
      page.items.length
        ? table(['Run', 'Status', 'Started', 'Duration', 'Records', 'Error'], page.items.slice(0, 15).map((r) => [
          h('a', { href: `#/run/${encodeURIComponent(r.run_id)}` }, `${String(r.run_id).slice(0, 8)} (log)`), badge(r.status), time(r.started_at), `${fmt(seconds(r))} s`, String(records(r)), r.error || '']), [2, 5])
        : h('p', {}, 'No runs yet.'));
  }
  await loadRuns();
  return () => { watching = null; };
}

