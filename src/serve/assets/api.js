// The public API, with the session cookie. Every answer that is not 2xx becomes an ApiError
// carrying the problem document (title, detail, errors), shown by ui.showProblem.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(method, path, body, options = {}) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { title: 'The server did not answer', detail: `${method} ${path}: ${e.message}; is dsm serve running?` });
  }
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  const text = await response.text();
  let doc = null;
  if (type.includes('json') && text) {
    try { doc = JSON.parse(text); } catch { doc = null; }
  }
  if (!response.ok) {
    const problem = doc && typeof doc === 'object' ? doc : { title: `HTTP ${response.status}`, detail: text.slice(0, 500) };
    const error = new ApiError(response.status, problem);
    if (response.status === 401 && !options.quiet401 && onUnauthorized) onUnauthorized(error);
    throw error;
  }
  return options.withHeaders ? { doc, headers: response.headers } : doc;
}

let onUnauthorized = null;
export function whenUnauthorized(f) { onUnauthorized = f; }

export const get = (path, options) => api('GET', path, undefined, options);
export const post = (path, body, options) => api('POST', path, body, options);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// The event stream: one EventSource for the page's life, listeners by event kind.
const listeners = new Map();
let source = null;
export function onEvent(kind, f) {
  if (!listeners.has(kind)) listeners.set(kind, new Set());
  listeners.get(kind).add(f);
  return () => listeners.get(kind).delete(f);
}
export function startEvents() {
  if (source) return;
  source = new EventSource('/api/events');
  for (const kind of ['run_started', 'run_progress', 'run_finished', 'source_status', 'install_progress']) {
    source.addEventListener(kind, (e) => {
      let data = null;
      try { data = JSON.parse(e.data); } catch { return; }
      for (const f of listeners.get(kind) || []) f(data);
      for (const f of listeners.get('*') || []) f(kind, data);
    });
  }
}
export function stopEvents() {
  if (source) source.close();
  source = null;
}

// A page being left (or kept in the back-forward cache) gives its stream's connection back:
// browsers allow few connections per server, and a stream held by a hidden page would make
// the next page wait for one.
window.addEventListener('pagehide', stopEvents);
window.addEventListener('pageshow', (e) => { if (e.persisted && listeners.size) startEvents(); });
