// Add a source: pick a template from dsm's plugin catalog, fill a form generated from its
// declared settings (required first, the rest folded), save it into meltano.yml through the
// API and test its connection.

import { get, post, api, query } from './api.js';
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
  const save = h('button', { type: 'submit', id: 'save' }, 'Save and test the connection');
  const form = h('form', { id: 'source-form' },
    h('h2', {}, `2. Configure ${plugin.label || plugin.name}`),
    h('p', { class: 'muted' }, `Template ${plugin.name} (${plugin.variant}). Saving writes the source into meltano.yml, then tests its connection.`),
    field('Source name', name, 'The plugin name in meltano.yml: letters, digits, - _ and .; another name than the template\'s inherits from it.'),
    required.map(row),
    rest.length ? h('details', { open: required.length === 0 && rest.length <= 3 }, h('summary', {}, `Advanced settings (${rest.length})`), rest.map(row)) : null,
    h('div', { class: 'row' }, save, h('button', { type: 'button', class: 'secondary', onclick: () => pickTemplate(step) }, 'Back to the catalog')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const config = {};
    const secrets = {};
    try {
      for (const { st, el } of inputs.values()) {
        const v = valueOf(st, el);
        if (v === undefined) continue;
        if (st.sensitive) secrets[st.name] = v; else config[st.name] = v;
      }
    } catch (err) {
      showProblem(out, { problem: { title: 'A setting is not valid', detail: err.message } });
      return;
    }
    const body = { name: name.value.trim(), template: `${plugin.name}--${plugin.variant}`, plugin_type: plugin.type };
    if (Object.keys(config).length) body.config = config;
    if (Object.keys(secrets).length) body.secrets = secrets;
    save.disabled = true;
    out.replaceChildren(h('p', { class: 'progress' }, 'Saving…'));
    try {
      const created = await post('/api/sources', body);
      for (const { st, el } of inputs.values()) if (st.sensitive) el.value = '';
      out.replaceChildren(h('p', { class: 'notice', id: 'saved' }, `Saved ${created.name} into meltano.yml. Testing its connection…`));
      await testAfterSave(out, created.name);
    } catch (err) {
      out.replaceChildren();
      showProblem(out, err);
    } finally {
      save.disabled = false;
    }
  });
  step.replaceChildren(form);
  name.focus();
}

async function testAfterSave(out, name) {
  const path = `/api/sources/${encodeURIComponent(name)}`;
  try {
    const doc = await post(`${path}/test`);
    out.append(h('p', { class: 'progress', id: 'wizard-test' }, 'Connection test: ', badge(doc.succeeded ? 'passed' : 'failed')),
      table(['Test', 'Result', 'Seconds', 'Why'], doc.results.map((r) => [r.test, badge(r.status), fmt(r.duration_seconds), r.reason || ''])));
    if (!doc.succeeded) {
      out.append(h('p', {}, 'Fix its settings on its page, or remove it again. ',
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          try { await api('DELETE', path); out.replaceChildren(h('p', { class: 'notice' }, `Removed ${name}.`)); } catch (e) { showProblem(out, e); }
        } }, `Remove ${name}`)));
    }
  } catch (e) {
    showProblem(out, e);
  }
  out.append(h('p', {}, h('a', { href: `#/source/${encodeURIComponent(name)}`, id: 'open-new' }, `Open ${name}`)));
}
