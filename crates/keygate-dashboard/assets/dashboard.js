// keygate dashboard: the Keys and Usage pages, over the self-service JSON API.
// Decides nothing: every rule (who may create, rotate, revoke what) is the API's.
// Secrets: the sign-in key lives in this tab's sessionStorage and in memory only, never in
// the DOM; a new key's plaintext is written to the one "New key" field and nowhere else.
(() => {
  'use strict';

  const STORAGE = 'keygate.dashboard.api_key';
  const $ = (id) => document.getElementById(id);
  const state = { session: { account: false, owner: null, api_base: '/api/v1' }, key: null, keys: [] };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- storage: sessionStorage only, and a browser that refuses it still works in memory.
  function storedKey() {
    try { return sessionStorage.getItem(STORAGE); } catch (_) { return null; }
  }
  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(STORAGE, key); else sessionStorage.removeItem(STORAGE);
    } catch (_) { /* in memory only */ }
  }

  // ---- the API
  // The error text of any of keygate's error formats (default, OpenAI, RFC 9457, 429).
  function errorText(body, status) {
    if (body && typeof body === 'object') {
      const e = body.error;
      if (e && typeof e === 'object' && typeof e.message === 'string') return e.message;
      if (typeof body.detail === 'string') return body.detail;
      if (typeof body.title === 'string') return body.title;
      if (typeof e === 'string') return e;
    }
    return 'The key API answered ' + status + '.';
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    // The host's account signs the request (its own cookie); otherwise the tab's key does.
    if (!state.session.account && state.key) headers.Authorization = 'Bearer ' + state.key;
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(state.session.api_base + path, init);
    } catch (_) {
      throw new ApiError(0, 'The key API could not be reached.');
    }
    let json = null;
    try { json = await response.json(); } catch (_) { json = null; }
    if (!response.ok) throw new ApiError(response.status, errorText(json, response.status));
    return json;
  }

  const keyPath = (keyId) => '/api-keys/' + encodeURIComponent(keyId);

  // ---- small DOM helpers: text only, never HTML from data.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value; else node.setAttribute(name, value === true ? '' : value);
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  const svg = (tag, attrs, ...children) => {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  };

  // A table cell whose content is one element: on a phone, the label is one column and
  // the content the other.
  const cell = (label, attrs, ...children) =>
    el('td', Object.assign({ 'data-label': label }, attrs), el('span', { class: 'cell' }, ...children));

  function when(iso, none) {
    if (!iso) return none;
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return none;
    const text = date.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
    return el('time', { datetime: iso }, text);
  }

  let statusTimer = null;
  function say(message) {
    const status = $('status');
    status.textContent = message;
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { status.textContent = ''; }, 6000);
  }

  // ---- who is signed in
  function showSignIn(message) {
    $('app').hidden = true;
    $('who').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = message || '';
    $('signin-key').focus();
  }

  function showApp() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('who').hidden = false;
    $('who-text').textContent = state.session.account
      ? 'Signed in as ' + state.session.owner
      : 'Signed in with an API key';
    // An account signs out through the host's own login, not here.
    $('sign-out').hidden = !!state.session.account;
  }

  function signOut(message) {
    state.key = null;
    storeKey(null);
    state.keys = [];
    clearNewKey();
    showSignIn();
    if (message) say(message);
  }

  // Refusals of the caller itself send it back to the sign-in form.
  function handle(error, errorField) {
    if (!state.session.account && (error.status === 401 || error.status === 403)) {
      signOut();
      $('signin-error').textContent = error.status === 401
        ? 'That API key was refused: ' + error.message
        : 'That API key may not manage keys (it needs the admin scope).';
      return;
    }
    if (errorField) errorField.textContent = error.message; else say(error.message);
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $('signin-key');
    const key = input.value.trim();
    input.value = '';
    if (!key) { showSignIn('Paste an API key.'); return; }
    state.key = key;
    try {
      await api('GET', '/api-keys?limit=1');
    } catch (error) {
      state.key = null;
      showSignIn(error.status === 403
        ? 'That API key may not manage keys (it needs the admin scope).'
        : error.message);
      return;
    }
    storeKey(key);
    showApp();
    await load();
    $('main').focus();
  }

  // ---- the Keys page
  async function loadKeys() {
    try {
      const list = await api('GET', '/api-keys?limit=1000');
      state.keys = Array.isArray(list && list.data) ? list.data : [];
      renderKeys();
    } catch (error) {
      handle(error);
    }
  }

  function renderKeys() {
    const body = $('keys').tBodies[0];
    body.replaceChildren(...state.keys.map(keyRow));
    applyFilter();
  }

  function keyRow(key) {
    const active = key.status === 'active';
    const label = key.name + ' (' + key.key_id + ')';
    const scopes = Array.isArray(key.scopes) ? key.scopes.join(', ') : '';
    const row = el('tr', { class: active ? null : 'inactive', 'data-key-id': key.key_id },
      cell('Name', {}, key.name),
      cell('Key id', {}, el('code', {}, key.key_id)),
      cell('Scopes', {}, scopes || 'none'),
      cell('Environment', {}, key.environment),
      cell('Created', {}, when(key.created_at, '')),
      cell('Expires', {}, when(key.expires_at, 'never')),
      cell('Last used', {}, when(key.last_used_at, 'never')),
      cell('Status', {}, el('span', { class: 'badge ' + key.status }, key.status)),
      cell('Actions', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary small', 'data-action': 'rotate',
          'aria-label': 'Rotate ' + label, disabled: !active }, 'Rotate'),
        el('button', { type: 'button', class: 'danger small', 'data-action': 'revoke',
          'aria-label': 'Revoke ' + label, disabled: key.status === 'revoked' }, 'Revoke')));
    row.dataset.search = (key.name + ' ' + key.key_id).toLowerCase();
    return row;
  }

  function applyFilter() {
    const needle = $('filter').value.trim().toLowerCase();
    let shown = 0;
    for (const row of $('keys').tBodies[0].rows) {
      const match = !needle || row.dataset.search.includes(needle);
      row.hidden = !match;
      if (match) shown += 1;
    }
    $('keys-empty').hidden = shown > 0;
    $('keys-empty').textContent = state.keys.length ? 'No key matches.' : 'No key yet.';
  }

  function showNewKey(plaintext, what) {
    const field = $('new-key');
    field.value = plaintext;
    $('new-key-title').textContent = what;
    $('new-key-panel').hidden = false;
    field.focus();
    field.select();
  }

  function clearNewKey() {
    const field = $('new-key');
    if (!field) return;
    field.value = '';
    $('new-key-panel').hidden = true;
  }

  async function copyNewKey() {
    const field = $('new-key');
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (_) {
      field.select();
      document.execCommand('copy');
    }
    say('Copied to the clipboard.');
  }

  async function create(event) {
    event.preventDefault();
    const error = $('create-error');
    error.textContent = '';
    const name = $('create-name').value.trim();
    const scopes = $('create-scopes').value.split(/[\s,]+/).filter(Boolean);
    const expires = $('create-expires').value;
    const body = { name, scopes };
    if (expires) body.expires_in = expires;
    const button = $('create-submit');
    button.disabled = true;
    try {
      const made = await api('POST', '/api-keys', body);
      $('create-name').value = '';
      showNewKey(made.key, 'Your new key: ' + made.name);
      say('Created ' + made.name + ' (' + made.key_id + ').');
      await loadKeys();
    } catch (e) {
      handle(e, error);
    } finally {
      button.disabled = false;
    }
  }

  // A <dialog> that answers true for "ok"; Escape and Cancel answer false.
  function confirmAction(title, text, okLabel) {
    const dialog = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
      dialog.showModal();
      $('confirm-cancel').focus();
    });
  }

  async function rowAction(event) {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const row = button.closest('tr');
    const key = state.keys.find((k) => k.key_id === row.dataset.keyId);
    if (!key) return;
    const label = '“' + key.name + '” (' + key.key_id + ')';
    if (button.dataset.action === 'revoke') {
      const ok = await confirmAction('Revoke key?', 'Revoke ' + label + '? Requests with it are refused at once. This cannot be undone.', 'Revoke key');
      if (!ok) { button.focus(); return; }
      try {
        await api('DELETE', keyPath(key.key_id));
        say('Revoked ' + key.name + ' (' + key.key_id + ').');
        await loadKeys();
        $('list-title').focus();
      } catch (e) { handle(e); }
    } else {
      const ok = await confirmAction('Rotate key?', 'Rotate ' + label + '? You get a new key; the old one stops working at once.', 'Rotate key');
      if (!ok) { button.focus(); return; }
      try {
        const rotated = await api('POST', keyPath(key.key_id) + '/rotate');
        showNewKey(rotated.key, 'The new key of ' + rotated.name);
        say('Rotated ' + key.name + ': the new key id is ' + rotated.key_id + '.');
        await loadKeys();
      } catch (e) { handle(e); }
    }
  }

  // ---- the Usage page
  // The report of `GET {api_base}/usage?days=30`: keygate's usage route answers
  //   {"keys":[{"key_id","daily":[{"day","requests","spend","refused"}],"spent",…}],"flags":[…],"account":{…}}
  // and a host's own route may answer the older shape
  //   {"data":[{"key_id":"kg_live_…","days":[{"date":"2026-12-01","requests":12,"spend":0}]}]}.
  // Without either (404 or 405), the page draws each key's total from the key list.
  async function usageReport() {
    try {
      const body = await api('GET', '/usage?days=30');
      const series = new Map();
      if (body && Array.isArray(body.keys)) {
        const spent = new Map();
        for (const entry of body.keys) {
          if (!entry || typeof entry.key_id !== 'string' || !Array.isArray(entry.daily)) continue;
          series.set(entry.key_id, entry.daily.filter((d) => d && typeof d.day === 'string')
            .map((d) => ({ date: d.day, requests: Number(d.requests) || 0, spend: Number(d.spend) || 0 })));
          spent.set(entry.key_id, Number(entry.spent) || 0);
        }
        const flags = Array.isArray(body.flags) ? body.flags : [];
        return { series, spent, flags, account: body.account || null };
      }
      if (!body || !Array.isArray(body.data)) return null;
      for (const entry of body.data) {
        if (!entry || typeof entry.key_id !== 'string' || !Array.isArray(entry.days)) continue;
        series.set(entry.key_id, entry.days.filter((d) => d && typeof d.date === 'string')
          .map((d) => ({ date: d.date, requests: Number(d.requests) || 0, spend: Number(d.spend) || 0 })));
      }
      return { series, spent: null, flags: [], account: null };
    } catch (error) {
      if (error.status === 404 || error.status === 405) return null;
      throw error;
    }
  }

  async function loadUsage() {
    let keys;
    let report = null;
    try {
      const list = await api('GET', '/api-keys?limit=1000');
      keys = Array.isArray(list && list.data) ? list.data : [];
      report = await usageReport();
    } catch (error) {
      handle(error);
      return;
    }
    state.keys = keys;
    const series = report && report.series;
    $('usage-note').textContent = series
      ? 'Requests per day over the last 30 days (UTC). Usage is written behind in batches, so the last few seconds may be missing.'
      : 'Requests counted since each key was created. Usage is written behind in batches, so the last few seconds may be missing.';
    renderFlags(keys, report);
    renderUsageTable(keys, report);
    renderChart(keys, series);
  }

  // Unusual activity, and the account's month, when the usage route reports them.
  function renderFlags(keys, report) {
    const names = new Map(keys.map((k) => [k.key_id, k.name]));
    const items = (report ? report.flags : []).map((flag) => {
      const who = (names.get(flag.key_id) || 'a key') + ' (' + flag.key_id + ')';
      const text = flag.kind === 'spike'
        ? who + ': ' + Number(flag.count).toLocaleString('en-US') + ' requests today, against a usual day of '
          + Number(flag.median).toLocaleString('en-US') + '.'
        : Number(flag.count).toLocaleString('en-US') + ' wrong secrets presented for ' + who + ', from '
          + when(flag.first_at, '?') + ' to ' + when(flag.last_at, '?') + '.';
      return el('li', {}, text);
    });
    $('flags-list').replaceChildren(...items);
    $('flags').hidden = items.length === 0;
    const account = report && report.account;
    $('account-spend').hidden = !account;
    if (account) {
      const cap = account.spend_cap === null || account.spend_cap === undefined ? 'no cap' : money(account.spend_cap);
      $('account-spend').textContent = 'The account this month: ' + money(Number(account.spent) || 0) + ' spent, of ' + cap + '.';
    }
  }

  const money = (microCents) => '$' + (microCents / 1e8).toFixed(2);

  function renderUsageTable(keys, report) {
    const series = report && report.series;
    const rows = keys.map((key) => {
      const days = series && series.get(key.key_id);
      const requests = days ? days.reduce((n, d) => n + d.requests, 0) : key.request_count || 0;
      const spent = report && report.spent ? report.spent.get(key.key_id) : undefined;
      const spend = spent !== undefined ? money(spent)
        : days ? money(days.reduce((n, d) => n + d.spend, 0)) : 'not reported';
      const cap = key.spend_cap === null || key.spend_cap === undefined ? 'no cap' : money(key.spend_cap);
      return el('tr', { class: key.status === 'active' ? null : 'inactive', 'data-key-id': key.key_id },
        cell('Key', {}, key.name, ' ', el('code', {}, key.key_id),
          key.status === 'active' ? null : el('span', { class: 'badge ' + key.status }, key.status)),
        cell('Requests', { class: 'num' }, requests.toLocaleString('en-US')),
        cell('Last used', {}, when(key.last_used_at, 'never')),
        cell('Last user agent', {}, key.last_user_agent || '—'),
        cell('Spend / monthly cap', {}, spend + ' / ' + cap));
    });
    $('usage').tBodies[0].replaceChildren(...rows);
    $('usage-empty').hidden = keys.length > 0;
  }

  function renderChart(keys, series) {
    $('chart-title').textContent = series ? 'Requests per day, all keys' : 'Requests per key';
    $('chart').replaceChildren(series ? dailyChart(series) : totalsChart(keys));
  }

  // One horizontal bar per key: its requests so far.
  function totalsChart(keys) {
    const rowHeight = 30;
    // In the box's own pixels, so that its text is as large as the page's on any screen.
    const width = Math.max(260, Math.min(900, $('chart').clientWidth || 640));
    const labelWidth = Math.round(width * 0.36);
    const barSpace = width - labelWidth - 60;
    const max = Math.max(1, ...keys.map((k) => k.request_count || 0));
    const height = Math.max(1, keys.length) * rowHeight + 10;
    const total = keys.reduce((n, k) => n + (k.request_count || 0), 0);
    const root = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-labelledby': 'chart-svg-title chart-svg-desc' },
      svg('title', { id: 'chart-svg-title' }, 'Requests per key'),
      svg('desc', { id: 'chart-svg-desc' }, keys.length + ' keys, ' + total + ' requests in all; the table lists each.'));
    keys.forEach((key, i) => {
      const count = key.request_count || 0;
      const y = i * rowHeight + 5;
      const room = Math.max(6, Math.floor(labelWidth / 8));
      const name = key.name.length > room ? key.name.slice(0, room - 1) + '…' : key.name;
      const bar = Math.max(count ? 2 : 0, Math.round((count / max) * barSpace));
      root.append(
        svg('text', { x: 0, y: y + 19 }, name),
        svg('rect', { class: 'bar', x: labelWidth, y: y + 4, width: bar, height: rowHeight - 10, rx: 3 },
          svg('title', {}, key.name + ' (' + key.key_id + '): ' + count + ' requests')),
        svg('text', { class: 'value', x: labelWidth + bar + 6, y: y + 19 }, count.toLocaleString('en-US')));
    });
    root.append(svg('line', { class: 'axis', x1: labelWidth, y1: 0, x2: labelWidth, y2: height }));
    return root;
  }

  // One column per day: the requests of every key that day.
  function dailyChart(series) {
    const byDate = new Map();
    for (const days of series.values()) {
      for (const d of days) byDate.set(d.date, (byDate.get(d.date) || 0) + d.requests);
    }
    const dates = [...byDate.keys()].sort();
    const width = Math.max(260, Math.min(900, $('chart').clientWidth || 640));
    const height = 220;
    const plot = height - 30;
    const max = Math.max(1, ...byDate.values());
    const step = width / Math.max(1, dates.length);
    const total = [...byDate.values()].reduce((n, v) => n + v, 0);
    const root = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-labelledby': 'chart-svg-title chart-svg-desc' },
      svg('title', { id: 'chart-svg-title' }, 'Requests per day'),
      svg('desc', { id: 'chart-svg-desc' }, dates.length + ' days, ' + total + ' requests in all; the table lists each key.'));
    dates.forEach((date, i) => {
      const count = byDate.get(date);
      const h = Math.round((count / max) * (plot - 10));
      const x = i * step + 2;
      root.append(svg('rect', { class: 'bar', x, y: plot - h, width: Math.max(1, step - 4), height: h },
        svg('title', {}, date + ': ' + count + ' requests')));
      if (i % (width < 480 ? 10 : 5) === 0) root.append(svg('text', { x, y: height - 8 }, date.slice(5)));
    });
    root.append(svg('line', { class: 'axis', x1: 0, y1: plot, x2: width, y2: plot }));
    return root;
  }

  // ---- start
  const page = document.body.dataset.page;
  const load = () => (page === 'usage' ? loadUsage() : loadKeys());

  async function boot() {
    $('signin-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut('Signed out.'));
    if (page === 'keys') {
      $('create-form').addEventListener('submit', create);
      $('filter').addEventListener('input', applyFilter);
      $('keys').addEventListener('click', rowAction);
      $('copy').addEventListener('click', copyNewKey);
      $('new-key-done').addEventListener('click', () => { clearNewKey(); $('create-name').focus(); });
    }
    try {
      const response = await fetch('session', { cache: 'no-store', credentials: 'same-origin' });
      if (response.ok) {
        const session = await response.json();
        if (session && typeof session.api_base === 'string') state.session = session;
      }
    } catch (_) { /* the defaults: no account, /api/v1 */ }
    if (!state.session.account) {
      state.key = storedKey();
      if (!state.key) { showSignIn(); return; }
    }
    showApp();
    await load();
  }

  boot();
})();
