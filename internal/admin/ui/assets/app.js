// app.js: the moat admin dashboard. Plain DOM code, no framework.
//
// Security notes:
// - The admin token lives in sessionStorage only (this tab, until logout or
//   the tab closes) and is sent as Authorization: Bearer on each fetch to
//   this origin. No cookie is ever set, so there is no ambient credential to
//   forge requests with.
// - Everything shown comes from the admin API and much of it from clients
//   (paths, principals, reason filters): it is written with textContent,
//   never parsed as HTML.
'use strict';
(function () {
  const TOKEN_KEY = 'moat.admin.token';
  const THEME_KEY = 'moat.dashboard.theme'; // a display preference, not a credential
  const POLL_MS = 2000;
  const RATE_WINDOW = 5; // samples (10 s) for rates
  const LATENCY_WINDOW = 15; // samples (30 s) for latency quantiles
  const CHART_POINTS = 90; // 3 minutes at one sample every 2 s
  const PAGES = ['overview', 'events', 'alerts', 'posture', 'keys'];
  const ALERT_REASONS = ['temporarily_blocked', 'auth_locked_out', 'block_store_unavailable'];
  const Prom = window.MoatProm;

  const $ = (id) => document.getElementById(id);

  // h builds an element: h('td', {class: 'num'}, 'text', childNode).
  // Attributes are set with setAttribute and children added as text nodes
  // or nodes, so no string is ever parsed as markup.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'onclick') el.addEventListener('click', v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function svg(tag, attrs) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  const fmtInt = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
  const fmtRate = new Intl.NumberFormat('en', { maximumFractionDigits: 1, minimumFractionDigits: 1 });
  function fmtDuration(seconds) {
    if (!Number.isFinite(seconds)) return '–';
    if (seconds < 0.001) return (seconds * 1e6).toFixed(0) + '\u00a0µs';
    if (seconds < 1) return (seconds * 1e3).toFixed(seconds < 0.01 ? 2 : 1) + '\u00a0ms';
    return seconds.toFixed(2) + '\u00a0s';
  }
  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 2) return '';
    return d.toLocaleString(undefined, { hour12: false });
  }
  const list = (a) => (a && a.length ? a.join(', ') : '');

  // ---- state -------------------------------------------------------------

  const state = {
    token: null,
    page: null,
    paused: false,
    timer: null,
    samples: [], // {t, total, allowed, denied, byReason, overhead, upstream}
    inflight: null,
    eventsLimit: 100,
    events: [],
    eventsKey: '',
    routes: null,
    confirmAction: null,
    limits: null, // the promise of loadLimits
    features: null, // {alerts, blocks} from the configuration, null when unknown
    alertsAvailable: true, // false once /api/v1/alerts answered 501
  };

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || 'HTTP ' + status);
      this.status = status;
      this.problem = problem;
    }
  }

  // api calls the admin API with the session's token. A 401 ends the
  // session; another error status throws an ApiError with the problem
  // document's detail.
  async function api(method, path, body, accept) {
    const headers = { Authorization: 'Bearer ' + state.token, Accept: accept || 'application/json' };
    const init = { method, headers, cache: 'no-store', redirect: 'error', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      logout('The admin API refused the token: sign in again.');
      throw new AuthError('unauthenticated');
    }
    const type = res.headers.get('Content-Type') || '';
    const data = /json/.test(type) ? await res.json() : await res.text();
    if (!res.ok) {
      const err = new ApiError(res.status, typeof data === 'object' ? data : null);
      if (res.status === 429 && err.problem && err.problem.reason_id === 'admin_locked_out') {
        // admin.login_limit: the answer carries no detail on purpose.
        const s = parseInt(res.headers.get('Retry-After'), 10);
        err.message = 'Too many failed sign-ins from this address: the admin API refuses it, whatever the token, for ' +
          (s > 0 ? fmtRemaining(s) : 'a while') + '.';
      }
      throw err;
    }
    return data;
  }

  function flash(msg) { $('flash').textContent = msg || ''; }

  function report(err, where) {
    if (err instanceof AuthError) return;
    let msg = err.message;
    if (err instanceof ApiError && err.problem && err.problem.reason_id) msg += ' (' + err.problem.reason_id + ')';
    if (err instanceof ApiError && err.status === 403) msg += ': this needs a token with the write role.';
    (where || flash)(msg);
  }

  // ---- theme -------------------------------------------------------------

  function effectiveTheme() {
    const forced = document.documentElement.dataset.theme;
    if (forced) return forced;
    return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  function applyTheme(theme) {
    if (theme) document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    const dark = effectiveTheme() === 'dark';
    const b = $('theme-toggle');
    b.setAttribute('aria-pressed', String(dark));
  }
  function initTheme() {
    let saved = null;
    try { saved = localStorage.getItem(THEME_KEY); } catch (e) { /* storage disabled */ }
    applyTheme(saved === 'dark' || saved === 'light' ? saved : null);
    $('theme-toggle').addEventListener('click', () => {
      const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
      try { localStorage.setItem(THEME_KEY, next); } catch (e) { /* storage disabled */ }
      applyTheme(next);
    });
    window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(document.documentElement.dataset.theme || null));
  }

  // ---- session -----------------------------------------------------------

  async function login(token) {
    state.token = token;
    await api('GET', '/api/v1/status'); // throws on a refused token
    sessionStorage.setItem(TOKEN_KEY, token);
    $('nav').hidden = false;
    $('logout').hidden = false;
    flash('');
    state.limits = loadLimits();
    startPolling();
    const page = location.hash.slice(1);
    show(PAGES.includes(page) ? page : 'overview');
  }

  // logout forgets the token and everything fetched with it.
  function logout(msg) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    stopPolling();
    state.samples = [];
    state.events = [];
    state.eventsKey = '';
    state.routes = null;
    clearNewKey();
    state.alertsAvailable = true;
    for (const id of ['events-table', 'alerts-table', 'anomaly-alerts-table', 'blocks-table', 'posture-table', 'keys-table', 'reasons-table', 'top-principals', 'top-ips']) {
      $(id).tBodies[0].replaceChildren();
    }
    $('drill').hidden = true;
    $('nav').hidden = true;
    $('logout').hidden = true;
    if ($('confirm').open) $('confirm').close();
    showLogin(msg);
  }

  function showLogin(msg) {
    for (const p of PAGES) $('page-' + p).hidden = true;
    $('page-login').hidden = false;
    state.page = null;
    $('login-error').textContent = msg || '';
    $('login-token').value = '';
    $('login-token').focus();
  }

  function initLogin() {
    $('login-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const token = $('login-token').value.trim();
      if (!token) {
        $('login-error').textContent = 'Paste an admin token.';
        return;
      }
      $('login-submit').disabled = true;
      $('login-error').textContent = '';
      try {
        await login(token);
        $('login-token').value = '';
      } catch (err) {
        state.token = null;
        if (err instanceof ApiError && err.status === 429) $('login-error').textContent = err.message;
        else if (!(err instanceof AuthError)) $('login-error').textContent = 'Could not reach the admin API: ' + err.message;
      } finally {
        $('login-submit').disabled = false;
      }
    });
    $('logout').addEventListener('click', () => {
      logout('You are logged out.');
      history.replaceState(null, '', location.pathname);
    });
  }

  // loadLimits reads admin.events_buffer, the largest limit the events
  // endpoint accepts (without it the dashboard asks for 100), and whether
  // anomaly detection and blocks are on, so that the alerts page does not
  // ask for what the gateway does not have.
  async function loadLimits() {
    state.features = null; // unknown: ask the endpoints
    try {
      const cfg = await api('GET', '/api/v1/config');
      const an = cfg && cfg.anomaly;
      const on = !!an && an.enabled !== false;
      state.features = { alerts: on, blocks: on && !!(an.block && an.block.enabled) };
      const n = cfg && cfg.admin && cfg.admin.events_buffer;
      if (Number.isInteger(n) && n > 0) state.eventsLimit = Math.min(n, 500);
      const routes = (cfg && cfg.routes) || [];
      $('route-list').replaceChildren(...routes.filter((r) => r && r.name).map((r) => h('option', { value: r.name })));
    } catch (err) { /* the default limit is safe */ }
  }

  // ---- navigation --------------------------------------------------------

  function show(page) {
    if (!state.token) return;
    state.page = page;
    $('page-login').hidden = true;
    for (const p of PAGES) $('page-' + p).hidden = p !== page;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (location.hash !== '#' + page) history.replaceState(null, '', '#' + page);
    document.title = $('h-' + page).textContent + ' · moat dashboard';
    $('h-' + page).focus();
    refreshPage(page);
  }

  function initNav() {
    window.addEventListener('hashchange', () => {
      const page = location.hash.slice(1);
      if (state.token && PAGES.includes(page)) show(page);
    });
  }

  // ---- polling -----------------------------------------------------------

  function startPolling() {
    stopPolling();
    const tick = async () => {
      if (!state.token) return;
      if (!state.paused) {
        await Promise.allSettled([pollMetrics(), state.page === 'events' && $('events-auto').checked ? loadEvents() : null,
          state.page === 'alerts' ? loadAlertsPage(false) : null]);
      }
      if (state.token) state.timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }
  function stopPolling() {
    clearTimeout(state.timer);
    state.timer = null;
  }

  function refreshPage(page) {
    const run = { events: loadEvents, alerts: () => loadAlertsPage(true), posture: loadPosture, keys: loadKeys }[page];
    if (run) run().catch((err) => report(err));
  }

  // ---- overview ----------------------------------------------------------

  async function pollMetrics() {
    try {
      const [text, status] = await Promise.all([api('GET', '/metrics', undefined, 'text/plain'), api('GET', '/api/v1/status')]);
      const m = Prom.parse(text);
      const byReason = Prom.sumBy(m, 'moat_requests_total', 'reason');
      const total = Prom.sum(m, 'moat_requests_total');
      const allowed = byReason.get('none') || 0;
      const sample = {
        t: performance.now(), total, allowed, denied: total - allowed, byReason,
        overhead: Prom.histogram(m, 'moat_gateway_overhead_seconds'),
        upstream: Prom.histogram(m, 'moat_upstream_duration_seconds'),
      };
      const last = state.samples[state.samples.length - 1];
      if (last && sample.total < last.total) state.samples = []; // the gateway restarted
      state.samples.push(sample);
      if (state.samples.length > CHART_POINTS + 1) state.samples.shift();
      state.inflight = status.in_flight;
      renderStatus(status);
      renderOverview();
      if ($('flash').dataset.source === 'metrics') { flash(''); delete $('flash').dataset.source; }
    } catch (err) {
      if (err instanceof AuthError) return;
      flash('Live numbers are not updating: ' + err.message);
      $('flash').dataset.source = 'metrics';
    }
  }

  function renderStatus(st) {
    const parts = ['moat ' + (st.version || 'dev'), 'up ' + st.uptime, st.routes + ' routes',
      'configuration ' + String(st.config_hash || '').slice(0, 12)];
    if (st.reloads) parts.push('reloads ' + st.reloads.succeeded + ' ok, ' + st.reloads.failed + ' failed' +
      (st.reloads.last_error ? ' (last: ' + st.reloads.last_error + ')' : ''));
    $('status-line').textContent = parts.join(' · ');
  }

  // windowed returns the latest sample and the one n samples before it.
  function windowed(n) {
    const s = state.samples;
    if (s.length < 2) return [s[s.length - 1], null];
    return [s[s.length - 1], s[Math.max(0, s.length - 1 - n)]];
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function renderOverview() {
    const [now, then] = windowed(RATE_WINDOW);
    if (!now) return;
    setText('stat-total', fmtInt.format(now.total));
    setText('stat-allowed', fmtInt.format(now.allowed));
    setText('stat-denied', fmtInt.format(now.denied));
    setText('stat-inflight', state.inflight == null ? '–' : fmtInt.format(state.inflight));
    const dt = then ? (now.t - then.t) / 1000 : 0;
    const rate = (a, b) => (dt > 0 ? (a - b) / dt : NaN);
    const rps = then ? rate(now.total, then.total) : NaN;
    setText('stat-rps', Number.isFinite(rps) ? fmtRate.format(rps) : '–');
    setText('stat-allowed-rate', then ? fmtRate.format(rate(now.allowed, then.allowed)) + '/s' : '');
    setText('stat-denied-rate', then ? fmtRate.format(rate(now.denied, then.denied)) + '/s' : '');

    const [, lthen] = windowed(LATENCY_WINDOW);
    const lat = (key) => {
      const d = lthen ? Prom.delta(now[key], lthen[key]) : now[key];
      if (!d || !(d.count > 0)) return '–';
      return fmtDuration(Prom.quantile(0.5, d)) + ' / ' + fmtDuration(Prom.quantile(0.95, d));
    };
    setText('stat-overhead', lat('overhead'));
    setText('stat-upstream', lat('upstream'));

    renderReasons(now, then, dt);
    renderChart();
  }

  function renderReasons(now, then, dt) {
    const rows = [...now.byReason.entries()].filter(([r]) => r !== 'none').sort((a, b) => b[1] - a[1]);
    const body = $('reasons-table').tBodies[0];
    if (rows.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No request has been denied since start.')));
      return;
    }
    body.replaceChildren(...rows.map(([reason, n]) => {
      const prev = then ? then.byReason.get(reason) || 0 : n;
      return h('tr', {},
        h('th', { scope: 'row' }, h('code', {}, reason)),
        h('td', { class: 'num' }, fmtInt.format(n)),
        h('td', { class: 'num' }, dt > 0 ? fmtRate.format((n - prev) / dt) : '–'),
        h('td', {}, h('a', { href: '#events', dataset: { reason } }, 'Show events', h('span', { class: 'sr-only' }, ' for ' + reason))));
    }));
  }

  // renderChart draws allowed/s and denied/s per polling interval as two
  // polylines in the SVG, with a few horizontal grid lines.
  function renderChart() {
    const chart = $('chart');
    // Draw in the element's own pixels so that text is not stretched.
    const W = Math.max(300, Math.round(chart.clientWidth || 800)), H = 220, top = 12, bottom = 8, left = 44;
    chart.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    const s = state.samples;
    const ok = [], bad = [];
    for (let i = 1; i < s.length; i++) {
      const dt = (s[i].t - s[i - 1].t) / 1000;
      if (dt <= 0) continue;
      ok.push((s[i].allowed - s[i - 1].allowed) / dt);
      bad.push((s[i].denied - s[i - 1].denied) / dt);
    }
    // The scale: four grid steps of 1, 2, 2.5 or 5 times a power of ten.
    const raw = Math.max(1, ...ok, ...bad) / 4;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= raw);
    const max = step * 4;
    const x = (i, n) => left + (W - left - 4) * (n <= 1 ? 1 : (CHART_POINTS - n + i) / (CHART_POINTS - 1));
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    const nodes = [chart.querySelector('title'), chart.querySelector('desc')];
    for (let g = 0; g <= 4; g++) {
      const v = (max * g) / 4;
      nodes.push(svg('line', { class: 'grid', x1: left, x2: W, y1: y(v), y2: y(v) }));
      const label = svg('text', { class: 'axis', x: left - 6, y: y(v) + 4, 'text-anchor': 'end' });
      label.textContent = Number.isInteger(v) ? fmtInt.format(v) : fmtRate.format(v);
      nodes.push(label);
    }
    const line = (vals, cls) => svg('polyline', { class: 'line ' + cls, points: vals.map((v, i) => x(i, vals.length).toFixed(1) + ',' + y(v).toFixed(1)).join(' ') });
    if (ok.length) nodes.push(line(ok, 'line-ok'), line(bad, 'line-bad'));
    chart.replaceChildren(...nodes);
    const lastOk = ok.length ? ok[ok.length - 1] : 0, lastBad = bad.length ? bad[bad.length - 1] : 0;
    chart.querySelector('desc').textContent = ok.length
      ? 'Latest: ' + fmtRate.format(lastOk) + ' allowed and ' + fmtRate.format(lastBad) + ' denied per second; highest over the window ' + fmtRate.format(Math.max(...ok, ...bad)) + ' per second.'
      : 'No data yet.';
    setText('chart-max', 'Scale: 0 to ' + fmtRate.format(max) + '/s.');
  }

  function initOverview() {
    $('pause').addEventListener('click', () => {
      state.paused = !state.paused;
      $('pause').setAttribute('aria-pressed', String(state.paused));
    });
    // "Show events" links carry the reason to filter on.
    $('reasons-table').addEventListener('click', (e) => {
      const a = e.target.closest('a[data-reason]');
      if (!a) return;
      clearFilters();
      $('f-reason').value = a.dataset.reason;
      state.eventsKey = '';
    });
  }

  // ---- events ------------------------------------------------------------

  function filterQuery() {
    const q = new URLSearchParams();
    for (const [id, name] of [['f-reason', 'reason'], ['f-route', 'route'], ['f-client', 'client_ip'], ['f-principal', 'principal'], ['f-since', 'since']]) {
      const v = $(id).value.trim();
      if (v) q.set(name, v);
    }
    q.set('limit', String(state.eventsLimit));
    return q;
  }

  async function loadEvents() {
    let data;
    try {
      data = await api('GET', '/api/v1/events?' + filterQuery().toString());
    } catch (err) {
      if (err instanceof AuthError) return;
      $('events-summary').textContent = 'Could not load events: ' + err.message;
      return;
    }
    const events = data.events || [];
    const key = filterQuery().toString() + '|' + events.length + '|' + (events[0] ? events[0].request_id : '');
    state.events = events;
    if (key === state.eventsKey) return; // unchanged: keep the table (and the keyboard focus in it)
    state.eventsKey = key;
    renderEvents(events);
  }

  function renderEvents(events) {
    const q = filterQuery();
    q.delete('limit');
    const filters = [...q.entries()].map(([k, v]) => k + '=' + v).join(', ');
    $('events-summary').textContent = events.length + (events.length === state.eventsLimit ? ' (the most shown)' : '') +
      ' denied request' + (events.length === 1 ? '' : 's') + (filters ? ' matching ' + filters : '') + '.';
    const body = $('events-table').tBodies[0];
    if (events.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No denied request matches.')));
    } else {
      body.replaceChildren(...events.map((ev) => h('tr', {},
        h('td', {}, h('time', { datetime: ev.time }, fmtTime(ev.time))),
        h('td', {}, h('button', { type: 'button', class: 'link', dataset: { rid: ev.request_id }, 'aria-label': 'Details of request ' + ev.request_id }, ev.request_id)),
        h('td', {}, ev.route || '—'),
        h('td', {}, ev.method),
        h('td', { class: 'mono' }, ev.path),
        h('td', {}, h('code', {}, ev.reason_id)),
        h('td', { class: 'num' }, ev.status),
        h('td', { class: 'mono' }, ev.client_ip),
        h('td', {}, ev.principal || ''))));
    }
    renderTop('top-principals', events, (ev) => ev.principal, 'f-principal');
    renderTop('top-ips', events, (ev) => ev.client_ip, 'f-client');
    const reasons = new Set(events.map((ev) => ev.reason_id));
    const last = state.samples[state.samples.length - 1];
    if (last) for (const r of last.byReason.keys()) if (r !== 'none') reasons.add(r);
    $('reason-list').replaceChildren(...[...reasons].sort().map((r) => h('option', { value: r })));
  }

  // renderTop counts the events by key and lists the ten largest; each row
  // has a button that filters on it.
  function renderTop(tableId, events, key, filterId) {
    const counts = new Map();
    for (const ev of events) {
      const k = key(ev);
      if (k) counts.set(k, (counts.get(k) || 0) + 1);
    }
    const rows = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 10);
    const body = $(tableId).tBodies[0];
    if (rows.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 2, class: 'empty' }, 'None in these events.')));
      return;
    }
    body.replaceChildren(...rows.map(([k, n]) => h('tr', {},
      h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link', dataset: { filter: filterId, value: k }, 'aria-label': 'Filter events on ' + k }, k)),
      h('td', { class: 'num' }, fmtInt.format(n)))));
  }

  function clearFilters() {
    for (const id of ['f-reason', 'f-route', 'f-client', 'f-principal', 'f-since']) $(id).value = '';
  }

  function showDetail(ev, rid) {
    $('drill-title').textContent = rid;
    const dl = $('drill-body');
    if (!ev) {
      dl.replaceChildren(h('dt', {}, 'Not found'), h('dd', {}, 'No recent denial has this request ID. The buffer keeps denials only, and only the most recent; search the audit log for older or allowed requests.'));
    } else {
      const rows = [['Time', fmtTime(ev.time) + ' (' + ev.time + ')'], ['Request ID', ev.request_id], ['Route', ev.route || '(no route matched)'],
        ['Method', ev.method], ['Path', ev.path], ['reason_id', ev.reason_id], ['Status', ev.status], ['Client IP', ev.client_ip], ['Principal', ev.principal || '(not authenticated)']];
      dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
    }
    $('drill').hidden = false;
    $('drill').focus();
  }

  // drill finds a request among the recent denials: in the rows shown, or
  // else in the whole buffer (the API has no request_id filter).
  async function drill(rid) {
    rid = rid.trim();
    if (!rid) return;
    let ev = state.events.find((e) => e.request_id === rid);
    if (!ev) {
      try {
        const data = await api('GET', '/api/v1/events?limit=' + state.eventsLimit);
        ev = (data.events || []).find((e) => e.request_id === rid);
      } catch (err) { report(err); return; }
    }
    showDetail(ev, rid);
  }

  function initEvents() {
    $('events-filter').addEventListener('submit', (e) => {
      e.preventDefault();
      state.eventsKey = '';
      loadEvents();
    });
    $('f-clear').addEventListener('click', () => {
      clearFilters();
      state.eventsKey = '';
      loadEvents();
    });
    $('events-table').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-rid]');
      if (b) drill(b.dataset.rid);
    });
    for (const id of ['top-principals', 'top-ips']) {
      $(id).addEventListener('click', (e) => {
        const b = e.target.closest('button[data-filter]');
        if (!b) return;
        $(b.dataset.filter).value = b.dataset.value;
        state.eventsKey = '';
        loadEvents();
      });
    }
    $('drill-form').addEventListener('submit', (e) => {
      e.preventDefault();
      drill($('drill-id').value);
    });
    $('drill-close').addEventListener('click', () => {
      $('drill').hidden = true;
      $('drill-id').focus();
    });
  }

  // ---- alerts ------------------------------------------------------------

  // loadAlertsPage refreshes the anomaly alerts and the related denials;
  // withBlocks also reloads the blocks table. The live poll leaves the
  // blocks alone so that their Unblock buttons keep keyboard focus.
  async function loadAlertsPage(withBlocks) {
    if (withBlocks) {
      // Opening the page: learn again what the (maybe reloaded)
      // configuration has.
      state.limits = loadLimits();
      state.alertsAvailable = true;
    }
    await state.limits;
    await Promise.all([loadAnomalyAlerts(), loadAlertDenials(), withBlocks ? loadBlocks() : null]);
  }

  function alertsQuery() {
    const q = new URLSearchParams({ limit: '200' });
    const det = $('af-detector').value, subject = $('af-subject').value.trim();
    if (det) q.set('detector', det);
    if (subject) q.set('subject', subject);
    return q.toString();
  }

  async function loadAnomalyAlerts() {
    const summary = $('anomaly-alerts-summary');
    const off = () => {
      // No detection: the related denials below are all there is.
      state.alertsAvailable = false;
      $('alerts-filter').hidden = true;
      $('anomaly-alerts-card').hidden = true;
      $('anomaly-alerts-table').tBodies[0].replaceChildren();
      summary.textContent = 'This gateway does not expose anomaly alerts (anomaly detection is off or not wired): the denials caused by blocks and lockouts are listed below.';
    };
    if (state.features && !state.features.alerts) state.alertsAvailable = false;
    if (!state.alertsAvailable) {
      off();
      return;
    }
    let alerts;
    try {
      alerts = (await api('GET', '/api/v1/alerts?' + alertsQuery())).alerts || [];
    } catch (err) {
      if (err instanceof AuthError) return;
      if (err instanceof ApiError && err.status === 501) {
        off();
        return;
      }
      summary.textContent = 'Could not load alerts: ' + err.message;
      return;
    }
    $('alerts-filter').hidden = false;
    $('anomaly-alerts-card').hidden = false;
    const blocked = alerts.filter((a) => a.blocked_until).length;
    summary.textContent = alerts.length
      ? alerts.length + ' alert' + (alerts.length === 1 ? '' : 's') + ', ' + blocked + ' of which blocked the subject.'
      : 'No anomaly alert matches.';
    const body = $('anomaly-alerts-table').tBodies[0];
    if (alerts.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'Nothing to show.')));
      return;
    }
    body.replaceChildren(...alerts.map((a) => h('tr', { class: a.severity === 'critical' || a.severity === 'high' ? 'warn' : undefined },
      h('td', {}, h('time', { datetime: a.at }, fmtTime(a.at))),
      h('td', {}, h('code', {}, a.detector), a.signal !== a.detector ? h('span', { class: 'meta' }, ' ' + a.signal) : ''),
      h('td', {}, a.severity),
      h('td', { class: 'mono' }, a.subject_kind + ' ' + a.subject),
      h('td', { class: 'num' }, a.count + ' / ' + a.threshold + (a.baseline !== undefined ? ' (baseline ' + fmtRate.format(a.baseline) + ')' : '')),
      h('td', {}, a.window),
      h('td', {}, a.blocked_until ? h('time', { datetime: a.blocked_until }, fmtTime(a.blocked_until)) : '—'),
      h('td', {}, (a.sample || []).length ? h('ul', { class: 'samples' }, a.sample.map((x) => h('li', {}, x.status + ' ' + (x.route || '—') + (x.reason_id ? ' ' + x.reason_id : '')))) : ''))));
  }

  async function loadAlertDenials() {
    let all = [];
    try {
      const res = await Promise.all(ALERT_REASONS.map((r) => api('GET', '/api/v1/events?reason=' + r + '&limit=' + state.eventsLimit)));
      all = res.flatMap((d) => d.events || []);
    } catch (err) {
      if (!(err instanceof AuthError)) $('alerts-summary').textContent = 'Could not load events: ' + err.message;
      return;
    }
    all.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    const subjects = new Set(all.map((e) => e.principal || e.client_ip));
    $('alerts-summary').textContent = all.length
      ? all.length + ' anomaly-related denial' + (all.length === 1 ? '' : 's') + ' of ' + subjects.size + ' client' + (subjects.size === 1 ? '' : 's') + ' or principal' + (subjects.size === 1 ? '' : 's') + ' in the buffer.'
      : 'No anomaly block or lockout in the recent events.';
    const body = $('alerts-table').tBodies[0];
    if (all.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'Nothing to show.')));
      return;
    }
    body.replaceChildren(...all.map((ev) => h('tr', {},
      h('td', {}, h('time', { datetime: ev.time }, fmtTime(ev.time))),
      h('td', {}, h('code', {}, ev.reason_id)),
      h('td', { class: 'mono' }, ev.client_ip),
      h('td', {}, ev.principal || ''),
      h('td', {}, ev.route || '—'),
      h('td', { class: 'num' }, ev.status),
      h('td', { class: 'mono' }, ev.request_id))));
  }

  // ---- blocks ------------------------------------------------------------

  async function loadBlocks() {
    const summary = $('blocks-summary');
    const off = () => {
      $('block-form').hidden = true;
      $('blocks-refresh').hidden = true;
      summary.textContent = 'This gateway has no block store (anomaly.block.enabled is off, or the endpoint is not wired).';
      $('blocks-table').tBodies[0].replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'Blocks are not available.')));
    };
    await state.limits;
    if (state.features && !state.features.blocks) {
      off();
      return;
    }
    let data;
    try {
      data = await api('GET', '/api/v1/blocks');
    } catch (err) {
      if (err instanceof AuthError) return;
      if (err instanceof ApiError && err.status === 501) {
        off();
        return;
      }
      summary.textContent = 'Could not load blocks: ' + err.message;
      return;
    }
    $('block-form').hidden = false;
    $('blocks-refresh').hidden = false;
    const blocks = data.blocks || [];
    summary.textContent = blocks.length + ' block' + (blocks.length === 1 ? '' : 's') + ' in force' + (data.truncated ? ' (list truncated)' : '') + '.';
    const body = $('blocks-table').tBodies[0];
    if (blocks.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No block in force.')));
      return;
    }
    const now = Date.now();
    body.replaceChildren(...blocks.map((b) => h('tr', { dataset: { kind: b.kind, subject: b.subject } },
      h('td', {}, b.kind),
      h('th', { scope: 'row', class: 'mono' }, b.subject, b.hashed ? h('span', { class: 'meta' }, ' (hashed)') : ''),
      h('td', {}, h('time', { datetime: b.until }, fmtTime(b.until))),
      h('td', {}, fmtRemaining((new Date(b.until).getTime() - now) / 1000)),
      h('td', {}, h('button', { type: 'button', class: 'small danger', dataset: { act: 'unblock', kind: b.kind, subject: b.subject }, 'aria-label': 'Unblock ' + b.kind + ' ' + b.subject }, 'Unblock')))));
  }

  function fmtRemaining(s) {
    if (!Number.isFinite(s) || s <= 0) return 'ending';
    if (s < 60) return Math.ceil(s) + '\u00a0s';
    if (s < 3600) return Math.ceil(s / 60) + '\u00a0min';
    if (s < 86400) return (s / 3600).toFixed(1) + '\u00a0h';
    return (s / 86400).toFixed(1) + '\u00a0d';
  }

  async function addBlock() {
    const req = { kind: $('block-kind').value, subject: $('block-subject').value.trim(), duration: $('block-duration').value };
    if (!req.subject) {
      $('block-error').textContent = req.kind === 'ip' ? 'Enter the client IP address or IPv6 prefix to block.' : 'Enter the principal to block, as authenticator:subject.';
      $('block-subject').focus();
      return;
    }
    $('block-error').textContent = '';
    $('block-add').disabled = true;
    try {
      const b = await api('POST', '/api/v1/blocks', req);
      flash('Blocked ' + b.kind + ' ' + b.subject + ' until ' + fmtTime(b.until) + '.');
      $('block-subject').value = '';
      await loadBlocks();
    } catch (err) {
      report(err, (m) => { $('block-error').textContent = m; });
      $('block-subject').focus();
    } finally {
      $('block-add').disabled = false;
    }
  }

  function initAlerts() {
    $('alerts-filter').addEventListener('submit', (e) => { e.preventDefault(); loadAnomalyAlerts(); });
    $('af-clear').addEventListener('click', () => { $('alerts-filter').reset(); loadAnomalyAlerts(); });
    $('blocks-refresh').addEventListener('click', () => loadBlocks());
    $('block-form').addEventListener('submit', (e) => { e.preventDefault(); addBlock(); });
    $('blocks-table').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-act="unblock"]');
      if (!b) return;
      const kind = b.dataset.kind, subject = b.dataset.subject;
      confirmDialog('Unblock ' + kind + ' ' + subject, 'Requests from it are admitted again at once on this instance and within the block cache TTL on the others.', false, async () => {
        try {
          await api('DELETE', '/api/v1/blocks/' + encodeURIComponent(kind) + '/' + encodeURIComponent(subject));
          flash('Unblocked ' + kind + ' ' + subject + '.');
        } finally {
          await loadBlocks(); // also when it had ended meanwhile (404)
          $('blocks-refresh').focus(); // the row and its button are gone
        }
      }, b);
    });
  }

  // ---- posture -----------------------------------------------------------

  async function loadPosture() {
    const data = await api('GET', '/api/v1/routes');
    state.routes = data.routes || [];
    renderPosture();
  }

  // cell shows one protection: the names active, or "none" marked as a gap.
  function cell(values, gapText) {
    if (values && values.length) return h('td', { class: 'okcell' }, list(values));
    return h('td', { class: 'gap' }, gapText || 'none');
  }

  function renderPosture() {
    const routes = state.routes || [];
    const onlyGaps = $('posture-gaps').checked;
    const warned = routes.filter((r) => r.warnings && r.warnings.length);
    $('posture-summary').textContent = routes.length + ' route' + (routes.length === 1 ? '' : 's') + ', ' + warned.length + ' with warnings.';
    const shown = onlyGaps ? warned : routes;
    const body = $('posture-table').tBodies[0];
    if (shown.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, routes.length ? 'No route has warnings.' : 'No route is configured.')));
      return;
    }
    body.replaceChildren(...shown.map((r) => {
      const warnings = r.warnings || [];
      const where = (r.hosts && r.hosts.length ? r.hosts.join(',') : '') + r.path + (r.methods && r.methods.length ? ' [' + r.methods.join(' ') + ']' : '');
      return h('tr', { class: warnings.length ? 'warn' : undefined },
        h('th', { scope: 'row' }, r.name, h('span', { class: 'path mono' }, where)),
        r.public ? h('td', { class: 'gap' }, 'public') : cell(r.authn),
        r.public ? h('td', { class: 'gap' }, 'public') : cell(r.authz),
        cell(r.limits),
        cell(r.validation),
        r.waf === 'block' ? h('td', { class: 'okcell' }, 'block') : h('td', { class: 'gap' }, r.waf || 'off'),
        r.masking ? h('td', { class: 'okcell' }, 'on') : h('td', { class: 'gap' }, 'off'),
        h('td', {}, r.cors ? 'on' : 'off'),
        h('td', { class: 'warnings' }, warnings.length ? h('ul', {}, warnings.map((w) => h('li', {}, w))) : ''));
    }));
  }

  function initPosture() {
    $('posture-refresh').addEventListener('click', () => loadPosture().catch((err) => report(err)));
    $('posture-gaps').addEventListener('change', renderPosture);
  }

  // ---- keys --------------------------------------------------------------

  async function loadKeys() {
    const data = await api('GET', '/api/v1/keys');
    const keys = data.keys || [];
    const active = keys.filter((k) => k.status === 'active').length;
    $('keys-summary').textContent = keys.length + ' key' + (keys.length === 1 ? '' : 's') + ', ' + active + ' active.';
    const body = $('keys-table').tBodies[0];
    if (keys.length === 0) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'No API key yet.')));
      return;
    }
    body.replaceChildren(...keys.map((k) => h('tr', { dataset: { key: k.id } },
      h('th', { scope: 'row', class: 'mono' }, k.id),
      h('td', {}, k.name || ''),
      h('td', {}, k.subject),
      h('td', {}, list(k.roles)),
      h('td', {}, list(k.scopes)),
      h('td', {}, h('span', { class: 'badge ' + k.status }, k.status), k.replaced_by ? h('span', { class: 'meta' }, ' → ' + k.replaced_by) : ''),
      h('td', {}, fmtTime(k.created_at)),
      h('td', {}, fmtTime(k.expires_at) || 'never'),
      h('td', {}, fmtTime(k.last_used_at) || '—'),
      h('td', {}, k.status === 'active' ? h('div', { class: 'buttons' }, [
        h('button', { type: 'button', class: 'small secondary', dataset: { act: 'rotate', id: k.id }, 'aria-label': 'Rotate key ' + k.id }, 'Rotate'),
        h('button', { type: 'button', class: 'small danger', dataset: { act: 'revoke', id: k.id }, 'aria-label': 'Revoke key ' + k.id }, 'Revoke'),
      ]) : ''))));
  }

  const splitList = (s) => s.split(/[\s,]+/).filter(Boolean);

  async function createKey() {
    const req = { subject: $('key-subject').value.trim() };
    if (!req.subject) {
      $('key-error').textContent = 'The subject is required: it is the principal requests with this key act as.';
      $('key-subject').focus();
      return;
    }
    const name = $('key-name').value.trim(), plan = $('key-plan').value.trim();
    if (name) req.name = name;
    if (plan) req.plan = plan;
    const roles = splitList($('key-roles').value), scopes = splitList($('key-scopes').value);
    if (roles.length) req.roles = roles;
    if (scopes.length) req.scopes = scopes;
    const exp = $('key-expiry').value;
    if (exp === 'at') {
      const d = new Date($('key-expires-at').value);
      if (Number.isNaN(d.getTime())) {
        $('key-error').textContent = 'Choose the expiry date and time.';
        $('key-expires-at').focus();
        return;
      }
      req.expires_at = d.toISOString();
    } else if (exp) {
      req.ttl = exp;
    }
    $('key-error').textContent = '';
    $('key-create').disabled = true;
    try {
      const res = await api('POST', '/api/v1/keys', req);
      showNewKey(res.key, res.record);
      $('key-form').reset();
      $('key-expires-at-field').hidden = true;
      await loadKeys();
    } catch (err) {
      report(err, (m) => { $('key-error').textContent = m; });
    } finally {
      $('key-create').disabled = false;
    }
  }

  function showNewKey(key, record) {
    $('new-key-value').textContent = key;
    $('new-key-subject').textContent = record.subject + ' (' + record.id + ')';
    $('new-key-copied').textContent = '';
    $('new-key').hidden = false;
    $('new-key').focus();
  }

  function clearNewKey() {
    $('new-key-value').textContent = '';
    $('new-key-subject').textContent = '';
    $('new-key-copied').textContent = '';
    $('new-key').hidden = true;
  }

  async function copyKey() {
    const text = $('new-key-value').textContent;
    try {
      await navigator.clipboard.writeText(text);
      $('new-key-copied').textContent = 'Copied.';
    } catch (e) {
      // No clipboard permission: select the key so that Ctrl+C copies it.
      const r = document.createRange();
      r.selectNodeContents($('new-key-value'));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      $('new-key-copied').textContent = 'The key is selected: press Ctrl+C (or ⌘C) to copy it.';
    }
  }

  function confirmDialog(title, text, withGrace, action, opener) {
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-grace-field').hidden = !withGrace;
    $('confirm-ok').textContent = title.split(' ')[0];
    state.confirmAction = action;
    state.confirmOpener = opener;
    $('confirm').showModal();
    (withGrace ? $('confirm-grace') : $('confirm-cancel')).focus();
  }

  function closeConfirm() {
    $('confirm').close();
    state.confirmAction = null;
  }

  function initKeys() {
    $('key-form').addEventListener('submit', (e) => { e.preventDefault(); createKey(); });
    $('key-expiry').addEventListener('change', () => { $('key-expires-at-field').hidden = $('key-expiry').value !== 'at'; });
    $('new-key-copy').addEventListener('click', copyKey);
    $('new-key-done').addEventListener('click', () => { clearNewKey(); $('key-name').focus(); });
    $('keys-refresh').addEventListener('click', () => loadKeys().catch((err) => report(err)));
    $('keys-table').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-act]');
      if (!b) return;
      const id = b.dataset.id;
      if (b.dataset.act === 'revoke') {
        confirmDialog('Revoke key ' + id, 'Requests with this key will be refused within a second. This cannot be undone.', false, async () => {
          await api('POST', '/api/v1/keys/' + encodeURIComponent(id) + '/revoke');
          flash('Key ' + id + ' revoked.');
          await loadKeys();
        }, b);
      } else {
        confirmDialog('Rotate key ' + id, 'A new key with the same subject, roles and scopes replaces it; the new key is shown once.', true, async () => {
          const grace = $('confirm-grace').value;
          const res = await api('POST', '/api/v1/keys/' + encodeURIComponent(id) + '/rotate', grace ? { grace } : undefined);
          showNewKey(res.key, res.record);
          await loadKeys();
        }, b);
      }
    });
    $('confirm-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const action = state.confirmAction;
      closeConfirm();
      if (!action) return;
      try { await action(); } catch (err) { report(err); }
    });
    $('confirm-cancel').addEventListener('click', () => {
      closeConfirm();
      if (state.confirmOpener && state.confirmOpener.isConnected) state.confirmOpener.focus();
    });
  }

  // ---- start -------------------------------------------------------------

  function init() {
    initTheme();
    initLogin();
    initNav();
    initOverview();
    initEvents();
    initPosture();
    initKeys();
    initAlerts();
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (!saved) {
      showLogin('');
      return;
    }
    login(saved).catch((err) => {
      if (!(err instanceof AuthError)) {
        state.token = null;
        showLogin('Could not reach the admin API: ' + err.message);
      }
    });
  }

  init();
})();
