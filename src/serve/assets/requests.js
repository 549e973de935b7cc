// Source requests: the request form, "my requests", the approval queue with its tabs, and one
// request with its history and the actions the caller may take.

import { get, post, query } from './api.js';
import { h, badge, table, field, showProblem, time, toast } from './ui.js';

function who() {
  try { return JSON.parse(localStorage.getItem('dsm.who') || 'null') || {}; } catch { return {}; }
}

const reviews = (role) => role === 'approver' || role === 'admin';
const requestLink = (r) => h('a', { href: `#/request/${encodeURIComponent(r.id)}` }, r.request.name);
const TABS = ['pending', 'approved', 'rejected', 'all'];

// ----- the list: the approval queue (approvers, admins) or my requests -----

export async function requestsPage(view, params) {
  const role = who().role;
  const queue = reviews(role) && params.mine !== 'true';
  const tab = TABS.includes(params.status) ? params.status : (queue ? 'pending' : 'all');
  view.append(h('h1', {}, queue ? 'Approval queue' : 'My requests'));
  const nav = h('nav', { class: 'tabs', 'aria-label': 'Requests by status' },
    TABS.map((t) => h('a', {
      href: `#/requests${query({ status: t, mine: queue ? undefined : 'true' })}`,
      'aria-current': t === tab ? 'page' : null,
    }, t)));
  const links = h('p', {},
    h('a', { href: '#/ask' }, 'Ask for a new source'),
    reviews(role) ? [' · ', h('a', { href: queue ? '#/requests?mine=true' : '#/requests' }, queue ? 'My requests' : 'Approval queue')] : null);
  view.append(nav, links);
  const doc = await get(`/api/requests${query({ status: tab === 'all' ? undefined : tab, mine: queue ? undefined : 'true' })}`);
  const items = doc.requests || [];
  if (!items.length) {
    view.append(h('p', { id: 'requests-empty' }, tab === 'all' ? 'No requests.' : `No ${tab} requests.`));
    return;
  }
  view.append(table(['Source', 'Status', 'Organisation', 'Requested by', 'Updated', 'Reason'],
    items.map((r) => [
      requestLink(r),
      badge(r.status),
      r.organisation || '',
      r.requester,
      time(r.updated_at),
      r.status === 'rejected' ? (r.reason || '') : '',
    ]), [2, 4]));
}

// ----- the request form -----

export async function askPage(view) {
  view.append(h('h1', {}, 'Ask for a new source'));
  const form = h('form', { class: 'panel', id: 'ask-form' });
  const name = h('input', { id: 'ask-name', required: true, pattern: '[A-Za-z0-9_.\\-]+', autocomplete: 'off' });
  const template = h('input', { id: 'ask-template', required: true, list: 'ask-templates', autocomplete: 'off' });
  const templates = h('datalist', { id: 'ask-templates' });
  const config = h('textarea', { id: 'ask-config', rows: 4, spellcheck: 'false' });
  const secretName = h('input', { id: 'ask-secret-name', autocomplete: 'off' });
  const secretValue = h('input', { id: 'ask-secret-value', type: 'password', autocomplete: 'new-password' });
  const classification = h('input', { id: 'ask-classification', required: true, autocomplete: 'off' });
  const description = h('input', { id: 'ask-description', autocomplete: 'off' });
  const notes = h('textarea', { id: 'ask-notes', rows: 3 });
  form.append(
    field('Source name', name, 'What the source will be called once approved (letters, digits, -, _, .).'),
    field('Plugin', template, 'A plugin of the catalog, NAME or NAME--VARIANT (tap-csv, tap-postgres, …).'),
    templates,
    field('Settings (JSON)', config, 'Settings that are not secret, as a JSON object: {"host": "db.example.org"}.'),
    h('fieldset', {}, h('legend', {}, 'A secret setting (sealed at once, never shown again)'),
      field('Setting', secretName), field('Value', secretValue)),
    field('Classification', classification, 'The label of the data this source holds (required).'),
    field('Description', description),
    field('Notes for the approver', notes),
    h('button', { type: 'submit', id: 'ask-submit' }, 'Send the request'));
  view.append(form);
  get('/api/plugins?plugin_type=extractor&limit=500').then((doc) => {
    for (const p of (doc.items || [])) templates.append(h('option', { value: p.name }));
  }).catch(() => { /* the list only helps typing */ });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let settings = {};
    if (config.value.trim()) {
      try { settings = JSON.parse(config.value); } catch (e) {
        showProblem(form, { problem: { title: 'The settings are not JSON', detail: e.message } });
        config.focus();
        return;
      }
    }
    const body = {
      name: name.value.trim(),
      template: template.value.trim(),
      config: settings,
      classification: classification.value.trim(),
      description: description.value.trim() || undefined,
      notes: notes.value.trim() || undefined,
    };
    if (secretName.value.trim()) body.secrets = { [secretName.value.trim()]: secretValue.value };
    try {
      const made = await post('/api/requests', body);
      secretValue.value = '';
      toast(`request for ${body.name} sent`);
      location.hash = `#/request/${encodeURIComponent(made.id)}`;
    } catch (e) {
      secretValue.value = '';
      showProblem(form, e);
    }
  });
  name.focus();
}

// ----- one request -----

export async function requestPage(view, _params, rest) {
  const id = rest[0];
  const me = who();
  const r = await get(`/api/requests/${encodeURIComponent(id)}`);
  view.append(h('h1', {}, `Request for ${r.request.name}`),
    h('p', {}, badge(r.status), ` requested by ${r.requester}`, r.organisation ? ` for ${r.organisation}` : '', `, ${time(r.created_at)}`));
  if (r.status === 'rejected' && r.reason) view.append(h('p', { class: 'reason', id: 'request-reason' }, h('strong', {}, 'Rejected: '), r.reason));
  const q = r.request;
  view.append(h('dl', { class: 'facts' },
    h('dt', {}, 'Plugin'), h('dd', {}, q.template || (q.plugin && q.plugin.name) || ''),
    h('dt', {}, 'Classification'), h('dd', {}, q.classification),
    h('dt', {}, 'Settings'), h('dd', {}, h('code', {}, JSON.stringify(q.config || {}))),
    h('dt', {}, 'Secrets'), h('dd', {}, (q.secrets || []).join(', ') || 'none'),
    h('dt', {}, 'Description'), h('dd', {}, q.description || ''),
    h('dt', {}, 'Notes'), h('dd', {}, q.notes || '')));

  const actions = h('section', { 'aria-labelledby': 'h-actions', id: 'request-actions' }, h('h2', { id: 'h-actions' }, 'What you can do'));
  const act = async (what, body, form) => {
    try {
      await post(`/api/requests/${encodeURIComponent(id)}/${what}`, body);
      toast(`request ${what}: done`);
      location.reload();
    } catch (e) { showProblem(form || actions, e); }
  };
  let any = false;
  const mine = r.requester === `token:${me.name}`;
  if (r.status === 'pending' && reviews(me.role) && !mine) {
    any = true;
    actions.append(h('button', { type: 'button', id: 'request-test', onclick: () => act('test', {}) }, 'Test the connection'));
    const overrideReason = h('input', { id: 'approve-reason', autocomplete: 'off' });
    const override = h('input', { id: 'approve-override', type: 'checkbox' });
    const approve = h('form', { class: 'panel', id: 'approve-form' },
      h('h3', {}, 'Approve'),
      field('Approve even though the connection test fails', override),
      field('Why (needed with the box above)', overrideReason),
      h('button', { type: 'submit' }, 'Approve'));
    approve.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act('approve', override.checked ? { override_test: true, reason: overrideReason.value } : {}, approve);
    });
    const reason = h('input', { id: 'reject-reason', required: true, autocomplete: 'off' });
    const reject = h('form', { class: 'panel', id: 'reject-form' },
      h('h3', {}, 'Reject'),
      field('Reason (the requester sees it)', reason),
      h('button', { type: 'submit' }, 'Reject'));
    reject.addEventListener('submit', (ev) => { ev.preventDefault(); act('reject', { reason: reason.value }, reject); });
    actions.append(approve, reject);
  }
  if (mine && r.status === 'rejected') {
    any = true;
    const notes = h('textarea', { id: 'resubmit-notes', rows: 2 });
    const again = h('form', { class: 'panel', id: 'resubmit-form' },
      h('h3', {}, 'Send it again'), field('What changed (notes for the approver)', notes),
      h('button', { type: 'submit' }, 'Resubmit'));
    again.addEventListener('submit', (ev) => { ev.preventDefault(); act('resubmit', notes.value.trim() ? { notes: notes.value.trim() } : {}, again); });
    actions.append(again);
  }
  if ((mine || me.role === 'admin') && (r.status === 'pending' || r.status === 'rejected')) {
    any = true;
    actions.append(h('button', { type: 'button', id: 'request-cancel', onclick: () => act('cancel', {}) }, 'Cancel the request'));
  }
  if (!any) actions.append(h('p', {}, 'Nothing: this request is not waiting for you.'));
  view.append(actions);

  view.append(h('section', { 'aria-labelledby': 'h-history' }, h('h2', { id: 'h-history' }, 'History'),
    table(['When', 'Who', 'What', 'Status', 'Reason or outcome'],
      (r.history || []).map((t) => [time(t.at), t.actor, t.action, badge(t.status), t.reason || '']))));
}
