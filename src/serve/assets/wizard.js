// Add a source: pick a template from dsm's plugin catalog, fill a form generated from its
// declared settings (required first, the rest folded), test its connection before anything is
// written, then save it into meltano.yml through the API.

import { get, post, query } from './api.js';
import { h, badge, table, field, showProblem, fmt } from './ui.js';

function debounce(f, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}

export async function wizardPage(view) {
  view.append(h('h1', {}, 'Add a source'));
  const step = h('div', { id: 'wizard' });
  view.append(step);
  pickTemplate(step);
}

function pickTemplate(step) {
  const q = h('input', { id: 'template-q', type: 'search', placeholder: 'postgres, csv, github…' });
  const kind = h('select', { id: 'template-kind' }, h('option', { value: 'extractor' }, 'extractors (sources of data)'), h('option', { value: 'loader' }, 'loaders (destinations)'));
  const list = h('ul', { class: 'plugins', id: 'templates', 'aria-live': 'polite' });
  step.replaceChildren(h('h2', {}, '1. Pick a template'),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); load(); } }, field('Search the catalog', q), field('Kind', kind)),
    list);
  let seq = 0;
  async function load() {
    const mine = ++seq;
    try {
      const page = await get(`/api/plugins${query({ plugin_type: kind.value, q: q.value.trim(), limit: 24 })}`);
      if (mine !== seq) return;
      list.replaceChildren(...page.items.map((p) => h('li', {},
        h('strong', {}, p.label || p.name), ' ', p.builtin ? badge('built-in') : null,
        h('div', { class: 'muted' }, `${p.name} · variant ${p.variant}`),
        p.description ? h('div', {}, p.description.length > 160 ? `${p.description.slice(0, 159)}…` : p.description) : null,
        h('button', { type: 'button', 'data-template': `${p.name}--${p.variant}`, onclick: () => settingsForm(step, p) }, `Use ${p.name} (${p.variant})`))));
      if (!page.items.length) list.replaceChildren(h('li', {}, 'No plugin of the catalog matches.'));
    } catch (e) { showProblem(step, e); }
  }
  q.addEventListener('input', debounce(load, 250));
  kind.addEventListener('change', load);
  load();
  q.focus();
}

function inputFor(st) {
  const kind = st.sensitive ? 'password' : st.kind;
  const common = { name: st.name, id: `set-${st.name}` };
  switch (kind) {
    case 'password': case 'oauth':
      return h('input', { ...common, type: 'password', autocomplete: 'new-password' });
    case 'integer':
      return h('input', { ...common, type: 'number', step: 1, value: st.value ?? '' });
    case 'decimal':
      return h('input', { ...common, type: 'number', step: 'any', value: st.value ?? '' });
    case 'boolean':
      return h('input', { ...common, type: 'checkbox', checked: st.value === true });
    case 'email':
      return h('input', { ...common, type: 'email', value: st.value ?? '' });
    case 'date_iso8601':
      return h('input', { ...common, type: 'date', value: st.value ?? '' });
    case 'options':
      return h('select', common, h('option', { value: '' }, '(default)'),
        (st.options || []).map((o) => h('option', { value: typeof o.value === 'string' ? o.value : JSON.stringify(o.value), selected: o.value === st.value }, o.label)));
    case 'array': case 'object':
      return h('textarea', { ...common, placeholder: kind === 'array' ? '[ … ] as JSON' : '{ … } as JSON' }, st.value !== null && st.value !== undefined ? JSON.stringify(st.value) : '');
    default:
      return h('input', { ...common, type: 'text', value: st.value ?? '' });
  }
}

// The value of one field, or undefined when it is left as declared; throws on bad JSON.
function valueOf(st, el) {
  if (st.kind === 'boolean' && !st.sensitive) return el.checked === (st.value === true) ? undefined : el.checked;
  const text = el.value.trim();
  if (!text) return undefined;
  if (st.sensitive) return el.value;
  if (st.value !== null && st.value !== undefined && text === String(typeof st.value === 'object' ? JSON.stringify(st.value) : st.value)) return undefined;
  switch (st.kind) {
    case 'integer': return Number.parseInt(text, 10);
    case 'decimal': return Number(text);
    case 'array': case 'object':
      try { return JSON.parse(text); } catch (e) { throw new Error(`${st.name}: not valid JSON (${e.message})`); }
    case 'options': {
      const o = (st.options || []).find((x) => (typeof x.value === 'string' ? x.value : JSON.stringify(x.value)) === text);
      return o ? o.value : text;
    }
    default: return text;
  }
}

function settingsForm(step, plugin) {
  const settings = plugin.settings.filter((st) => st.kind !== 'hidden');
  const required = settings.filter((st) => st.required);
  const rest = settings.filter((st) => !st.required);
  const name = h('input', { id: 'source-name', name: 'name', value: plugin.name, required: true, pattern: '[A-Za-z0-9_][A-Za-z0-9_.\\-]*', maxlength: 100 });
  const inputs = new Map();
  const row = (st) => {
    const el = inputFor(st);
    inputs.set(st.name, { st, el });
    const label = `${st.label || st.name}${st.required ? ' (required)' : ''}${st.sensitive ? ' (secret)' : ''}`;
    return field(label, el, [st.description, st.sensitive ? 'Kept in the encrypted secret store, never in meltano.yml.' : null].filter(Boolean).join(' '));
  };
  const out = h('div', { id: 'wizard-result', 'aria-live': 'polite' });
  const test = h('button', { type: 'submit', id: 'test' }, 'Test the connection');
  const form = h('form', { id: 'source-form' },
    h('h2', {}, `2. Configure ${plugin.label || plugin.name}`),
    h('p', { class: 'muted' }, `Template ${plugin.name} (${plugin.variant}). The connection is tested first, with nothing written; saving then writes the source into meltano.yml and its secrets into the encrypted store.`),
    field('Source name', name, 'The plugin name in meltano.yml: letters, digits, - _ and .; another name than the template\'s inherits from it.'),
    required.map(row),
    rest.length ? h('details', { open: required.length === 0 && rest.length <= 3 }, h('summary', {}, `Advanced settings (${rest.length})`), rest.map(row)) : null,
    h('div', { class: 'row' }, test, h('button', { type: 'button', class: 'secondary', onclick: () => pickTemplate(step) }, 'Back to the catalog')),
    out);
  // The body of POST /api/sources from the form; null (with the problem shown) when a field is bad.
  const bodyOf = () => {
    const config = {};
    const secrets = {};
    try {
      for (const { st, el } of inputs.values()) {
        const v = valueOf(st, el);
        if (v === undefined) continue;
        if (st.sensitive) secrets[st.name] = v; else config[st.name] = v;
      }
    } catch (err) {
      out.replaceChildren();
      showProblem(out, { problem: { title: 'A setting is not valid', detail: err.message } });
      return null;
    }
    const body = { name: name.value.trim(), template: `${plugin.name}--${plugin.variant}`, plugin_type: plugin.type };
    if (Object.keys(config).length) body.config = config;
    if (Object.keys(secrets).length) body.secrets = secrets;
    return body;
  };
  // A change after a test makes its result stale: it has to be tested again before saving.
  form.addEventListener('input', () => { if (out.querySelector('#save, #save-anyway')) out.replaceChildren(h('p', { class: 'muted' }, 'Changed since the test: test the connection again.')); });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = bodyOf();
    if (!body) return;
    test.disabled = true;
    out.replaceChildren(h('p', { class: 'progress' }, 'Testing the connection (nothing is saved yet)…'));
    try {
      const doc = await post('/api/source-tests', body);
      out.replaceChildren(...testResult(doc));
      const save = async () => {
        const now = bodyOf();
        if (!now) return;
        for (const b of out.querySelectorAll('button')) b.disabled = true;
        try {
          const created = await post('/api/sources', now);
          for (const { st, el } of inputs.values()) if (st.sensitive) el.value = '';
          out.append(h('p', { class: 'notice', id: 'saved' }, `Saved ${created.name} into meltano.yml. `,
            h('a', { href: `#/source/${encodeURIComponent(created.name)}`, id: 'open-new' }, `Open ${created.name}`)));
        } catch (err) {
          for (const b of out.querySelectorAll('button')) b.disabled = false;
          showProblem(out, err);
        }
      };
      if (doc.results.some((r) => (r.reason || '').includes('is not installed'))) {
        out.append(h('p', { class: 'muted', id: 'not-installed' }, 'Its plugin is not installed yet, so it cannot be tested before it is saved: saving installs it in the background; test it from its page once that is done.'));
      }
      out.append(doc.succeeded
        ? h('p', {}, h('button', { type: 'button', id: 'save', onclick: save }, `Save ${body.name}`))
        : h('p', {}, 'The test failed: fix the settings and test again, or ',
          h('button', { type: 'button', class: 'danger', id: 'save-anyway', onclick: save }, 'save anyway')));
      out.scrollIntoView({ block: 'nearest' });
    } catch (err) {
      out.replaceChildren();
      showProblem(out, err);
    } finally {
      test.disabled = false;
    }
  });
  step.replaceChildren(form);
  name.focus();
}

// A test document shown: the verdict, a row per test, and a failure's last stderr lines.
function testResult(doc) {
  const tails = doc.results.filter((r) => r.stderr_tail && r.stderr_tail.length)
    .map((r) => h('details', { open: true }, h('summary', {}, `${r.test}: the plugin's last words`), h('pre', { class: 'log' }, r.stderr_tail.join('\n'))));
  return [h('p', { class: 'progress', id: 'wizard-test' }, 'Connection test: ', badge(doc.succeeded ? 'passed' : 'failed')),
    table(['Test', 'Result', 'Seconds', 'Why'], doc.results.map((r) => [r.test, badge(r.status), fmt(r.duration_seconds), r.reason || ''])),
    ...tails];
}
