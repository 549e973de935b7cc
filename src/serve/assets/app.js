// The dashboard's shell: the hash router, signing in and out, the navigation.

import { api, whenUnauthorized, startEvents, stopEvents } from './api.js';
import { h, showProblem } from './ui.js';
import { overviewPage, sourcesPage, flowsPage, runsPage, runPage, auditPage } from './pages.js';
import { sourcePage } from './source.js';
import { wizardPage } from './wizard.js';
import { requestsPage, requestPage, askPage } from './requests.js';

const main = document.getElementById('main');
let cleanup = null;
let afterLogin = '#/';

function who() {
  try { return JSON.parse(localStorage.getItem('dsm.who') || 'null'); } catch { return null; }
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, q] = raw.split('?');
  const params = Object.fromEntries(new URLSearchParams(q || ''));
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { path, parts, params };
}

const routes = {
  '': overviewPage,
  sources: sourcesPage,
  source: sourcePage,
  add: wizardPage,
  flows: flowsPage,
  runs: runsPage,
  run: runPage,
  audit: auditPage,
  requests: requestsPage,
  request: requestPage,
  ask: askPage,
};

function showShell(signedIn) {
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('who').hidden = !signedIn;
  const w = who();
  document.getElementById('who-name').textContent = w ? `${w.name} (${w.role})` : '';
  document.getElementById('nav-audit').hidden = !!(w && w.role !== 'admin');
  // A requester asks for sources; registering one directly is for operators and admins.
  document.getElementById('nav-add').hidden = !!(w && (w.role === 'requester' || w.role === 'approver'));
}

function markNav(first) {
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href').replace(/^#\/?/, '').split('/')[0];
    const current = first === target || (first === 'source' && target === 'sources') || (first === 'run' && target === 'runs')
      || ((first === 'request' || first === 'ask') && target === 'requests');
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

async function render(event) {
  if (cleanup) { try { cleanup(); } catch { /* the old page is gone */ } cleanup = null; }
  const { parts, params } = parseHash();
  const first = parts[0] || '';
  if (first === 'login') { loginPage(); return; }
  // Without a sign-in known to this browser, straight to the login form (no request that
  // could only answer 401).
  if (!who()) { afterLogin = location.hash || '#/'; location.hash = '#/login'; return; }
  const page = routes[first];
  showShell(true);
  markNav(first);
  // A fresh view per render: a page still loading when the next one starts writes into a
  // detached element.
  const view = h('div', { class: 'view' });
  main.replaceChildren(view);
  if (!page) {
    view.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
    return;
  }
  startEvents();
  try {
    cleanup = (await page(view, params, parts.slice(1))) || null;
  } catch (e) {
    if (e && e.status === 401) return;
    showProblem(view, e);
  }
  document.title = `${main.querySelector('h1')?.textContent || 'dsm'} · dsm`;
  // After a move to another page, focus goes to the new content (a screen reader reads it);
  // on the first load it stays at the top, where Tab reaches the skip link first.
  if (event) main.focus({ preventScroll: true });
}

function loginPage() {
  stopEvents();
  showShell(false);
  document.title = 'Log in · dsm';
  const token = h('input', { id: 'token', type: 'password', name: 'token', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const form = h('form', { class: 'login panel', id: 'login-form' },
    h('h1', {}, 'Log in to dsm'),
    h('div', { class: 'field' },
      h('label', { for: 'token' }, 'API token'),
      token,
      h('span', { class: 'help', id: 'token-help' }, 'Make one in a terminal with `dsm tokens create NAME --role viewer|operator|admin`.')),
    h('button', { type: 'submit' }, 'Log in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const info = await api('POST', '/api/session', { token: token.value }, { quiet401: true });
      token.value = '';
      localStorage.setItem('dsm.who', JSON.stringify({ name: info.name, role: info.role }));
      location.hash = afterLogin && afterLogin !== '#/login' ? afterLogin : '#/';
      if (location.hash === afterLogin) render();
    } catch (e) {
      token.value = '';
      showProblem(form, e);
      token.focus();
    }
  });
  main.replaceChildren(form);
  token.focus();
}

whenUnauthorized(() => {
  localStorage.removeItem('dsm.who');
  if (!location.hash.startsWith('#/login')) afterLogin = location.hash || '#/';
  location.hash = '#/login';
});

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('DELETE', '/api/session'); } catch { /* signed out either way */ }
  localStorage.removeItem('dsm.who');
  stopEvents();
  afterLogin = '#/';
  location.hash = '#/login';
});

window.addEventListener('hashchange', render);
render();
