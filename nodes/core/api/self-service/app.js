// The self-service page (docs/self-service.md): plain browser JavaScript over the REST API, no
// framework, no build step. The API key lives in sessionStorage only (never in a URL) and goes in
// the EAPI-ELCLV2 header. Every text from the API is set with textContent, never as HTML.
'use strict';

(function () {
  const KEY_ITEM = 'conflux.selfService.key';
  const API = new URL('../v2/', window.location.href);
  const REFRESH_MS = 3000;
  const $ = (id) => document.getElementById(id);

  let catalogue = [];
  let open = null; // the subscription whose deliveries are shown
  let refreshTimer = null;

  // ---- the API ------------------------------------------------------------------------------

  class ApiFailure extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function call(method, path, body) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = { Accept: 'application/json' };
    if (key) headers['EAPI-ELCLV2'] = key;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(new URL(path.replace(/^\//, ''), API), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
    const text = await res.text();
    let json = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = {};
    }
    if (res.status === 401) {
      signOut('The key was refused: sign in again.');
      throw new ApiFailure(401, 'unauthorized');
    }
    if (!res.ok) throw new ApiFailure(res.status, json.detail || json.title || `HTTP ${res.status}`);
    return json;
  }

  /** Every item of a list, page after page. */
  async function all(path) {
    const items = [];
    let cursor;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const page = await call('GET', `${path}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      items.push(...(page.items || []));
      cursor = page.cursor;
    } while (cursor);
    return items;
  }

  // ---- small DOM helpers (text only) --------------------------------------------------------

  function el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function button(label, action, onClick) {
    const b = el('button', label, { type: 'button', 'data-action': action });
    b.addEventListener('click', () => run(onClick));
    return b;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.append(c);
      else td.textContent = c === null || c === undefined ? '' : String(c);
      tr.append(td);
    }
    return tr;
  }

  function say(text, kind) {
    const m = $('message');
    m.textContent = text;
    m.className = `message ${kind || 'info'}`;
  }

  /** Runs an action, showing what went wrong. */
  async function run(action) {
    try {
      await action();
    } catch (err) {
      if (!(err instanceof ApiFailure && err.status === 401)) say(err.message || String(err), 'error');
    }
  }

  const text = (v) => (typeof v === 'string' ? v.trim() : '');
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');

  // ---- sign in / out ------------------------------------------------------------------------

  async function signIn(key) {
    sessionStorage.setItem(KEY_ITEM, key);
    try {
      await call('GET', 'webhooks?limit=1');
    } catch (err) {
      sessionStorage.removeItem(KEY_ITEM);
      throw err;
    }
    show(true);
    await Promise.all([loadCatalogue(), loadWebhooks(), loadFtp()]);
    say('Signed in.', 'ok');
  }

  function signOut(why) {
    sessionStorage.removeItem(KEY_ITEM);
    closeDeliveries();
    show(false);
    say(why || 'Signed out.', why ? 'error' : 'info');
  }

  function show(signedIn) {
    $('login').hidden = signedIn;
    $('app').hidden = !signedIn;
    $('logout').hidden = !signedIn;
    $('who').hidden = !signedIn;
    const key = sessionStorage.getItem(KEY_ITEM) || '';
    $('who').textContent = signedIn ? `Key ${key.slice(0, 8)}…` : '';
    if (!signedIn) $('login-key').value = '';
  }

  // ---- event catalogue ----------------------------------------------------------------------

  async function loadCatalogue() {
    catalogue = (await call('GET', 'event-types')).items || [];
    const body = $('event-list').tBodies[0];
    body.replaceChildren(
      ...catalogue.map((t) => {
        const tr = row([t.type, t.description, t.origin, button('Use', 'use-event', () => useEvent(t.type))]);
        tr.dataset.type = t.type;
        return tr;
      }),
    );
  }

  function useEvent(type) {
    const input = $('wh-events');
    const now = input.value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s && s !== '*');
    if (!now.includes(type)) now.push(type);
    input.value = now.join(', ');
    selectTab('webhooks');
    say(`${type} added to the new webhook's events.`, 'info');
  }

  // ---- webhooks -----------------------------------------------------------------------------

  async function loadWebhooks() {
    const subs = await all('webhooks');
    const body = $('webhook-list').tBodies[0];
    body.replaceChildren(
      ...subs.map((s) => {
        const auth = [s.username ? `basic (${s.username})` : '', s.hasSecret ? 'signed' : ''].filter(Boolean).join(', ') || 'none';
        const state = s.enabled ? 'active' : s.disabledAt ? `switched off: ${s.disabledReason || ''}` : 'paused';
        const actions = el('span', null, { class: 'actions' });
        actions.append(
          button('Test', 'test', () => testWebhook(s)),
          s.enabled ? button('Pause', 'pause', () => setEnabled(s, false)) : button('Resume', 'resume', () => setEnabled(s, true)),
          button('Deliveries', 'deliveries', () => openDeliveries(s)),
          button('Delete', 'delete', () => deleteWebhook(s)),
        );
        const tr = row([s.url, (s.events || []).join(', '), auth, state, actions]);
        tr.dataset.id = String(s.id);
        tr.dataset.state = state;
        return tr;
      }),
    );
    $('webhook-empty').hidden = subs.length > 0;
    if (open && !subs.some((s) => s.id === open.id)) closeDeliveries();
  }

  async function addWebhook(form) {
    const data = new FormData(form);
    const body = {
      url: text(data.get('url')),
      events: text(data.get('events'))
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    };
    for (const f of ['username', 'password', 'secret']) if (text(data.get(f))) body[f] = text(data.get(f));
    const made = await call('POST', 'webhooks', body);
    form.reset();
    $('wh-events').value = '*';
    await loadWebhooks();
    say(`Webhook ${made.id} added: it receives the next matching event.`, 'ok');
  }

  async function testWebhook(s) {
    const r = await call('POST', `webhooks/${s.id}/test`);
    say(`Test event ${r.eventId} queued for ${s.url}.`, 'ok');
    if (open && open.id === s.id) await loadDeliveries();
  }

  async function setEnabled(s, enabled) {
    await call('PATCH', `webhooks/${s.id}`, { enabled });
    await loadWebhooks();
    say(enabled ? `Webhook ${s.id} resumed.` : `Webhook ${s.id} paused: nothing is sent until you resume it.`, 'ok');
  }

  async function deleteWebhook(s) {
    if (!window.confirm(`Delete the webhook to ${s.url} and its delivery log?`)) return;
    await call('DELETE', `webhooks/${s.id}`);
    await loadWebhooks();
    say(`Webhook ${s.id} deleted.`, 'ok');
  }

  function newSecret() {
    const bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    $('wh-secret').value = `whsec_${btoa(String.fromCharCode(...bytes))}`;
    $('wh-secret').type = 'text';
    say('A new signing secret is in the form: copy it to your receiver now, it is never shown again once saved.', 'info');
  }

  // ---- deliveries ---------------------------------------------------------------------------

  async function openDeliveries(s) {
    open = s;
    $('deliveries').hidden = false;
    $('deliveries-url').textContent = s.url;
    await loadDeliveries();
    clearInterval(refreshTimer);
    refreshTimer = setInterval(() => run(loadDeliveries), REFRESH_MS);
  }

  function closeDeliveries() {
    open = null;
    clearInterval(refreshTimer);
    refreshTimer = null;
    $('deliveries').hidden = true;
    $('delivery-list').tBodies[0].replaceChildren();
  }

  async function loadDeliveries() {
    const s = open;
    if (!s) return;
    const items = await all(`webhooks/${s.id}/deliveries`);
    if (open !== s) return;
    const body = $('delivery-list').tBodies[0];
    body.replaceChildren(
      ...items.map((d) => {
        const tr = row([
          when(d.attemptedAt),
          d.eventType,
          d.eventId,
          d.attempt,
          d.status === null ? '—' : d.status,
          d.outcome,
          el('span', d.error || d.response || '', { class: 'response' }),
          button('Resend', 'resend', () => resend(s, d)),
        ]);
        tr.dataset.id = String(d.id);
        tr.dataset.status = d.status === null ? '' : String(d.status);
        tr.dataset.eventId = d.eventId;
        return tr;
      }),
    );
    $('delivery-empty').hidden = items.length > 0;
  }

  async function resend(s, d) {
    const r = await call('POST', `webhooks/${s.id}/deliveries/${d.id}/resend`);
    say(`Event ${r.eventId} queued again for ${s.url}.`, 'ok');
    await loadDeliveries();
  }

  // ---- FTP targets --------------------------------------------------------------------------

  const RULES = ['naming', 'archive', 'metadata'];

  async function loadFtp() {
    const targets = await all('ftp-targets');
    const body = $('ftp-list').tBodies[0];
    body.replaceChildren(
      ...targets.map((t) => {
        const who = t.userRef ? `user ${t.userRef}` : t.client ? `client ${t.client}` : 'everyone';
        const rules = RULES.filter((r) => t[r]).map((r) => `${r}: ${t[r]}`);
        const actions = el('span', null, { class: 'actions' });
        actions.append(
          button('Edit', 'edit', () => editFtp(t)),
          t.enabled ? button('Pause', 'pause', () => ftpEnabled(t, false)) : button('Resume', 'resume', () => ftpEnabled(t, true)),
          button('Delete', 'delete', () => deleteFtp(t)),
        );
        const tr = row([
          t.name,
          who,
          t.url || `${t.protocol}://${t.host}:${t.port}${t.directory}`,
          rules.join(' · '),
          t.enabled ? 'active' : 'paused',
          actions,
        ]);
        tr.dataset.id = String(t.id);
        return tr;
      }),
    );
    $('ftp-empty').hidden = targets.length > 0;
  }

  function editFtp(t) {
    const f = $('ftp-form');
    f.reset();
    $('ftp-id').value = String(t.id);
    for (const name of ['name', 'client', 'userRef', 'host', 'port', 'protocol', 'username', 'directory', ...RULES]) {
      const v = t[name];
      f.elements[name].value = v === null || v === undefined ? '' : String(v);
    }
    $('ftp-form-title').textContent = `Change FTP target ${t.name}`;
    $('ftp-cancel').hidden = false;
  }

  function resetFtpForm() {
    $('ftp-form').reset();
    $('ftp-id').value = '';
    $('ftp-form-title').textContent = 'Add an FTP target';
    $('ftp-cancel').hidden = true;
  }

  async function saveFtp(form) {
    const data = new FormData(form);
    const id = text(data.get('id'));
    const body = {};
    for (const name of ['name', 'host', 'protocol', 'username', 'directory', 'naming']) if (text(data.get(name))) body[name] = text(data.get(name));
    // Empty optional fields: nothing on create; cleared (null) on change.
    for (const name of ['client', 'userRef', 'archive', 'metadata']) {
      const v = text(data.get(name));
      if (v) body[name] = v;
      else if (id) body[name] = null;
    }
    if (text(data.get('port'))) body.port = Number(text(data.get('port')));
    if (text(data.get('password'))) body.password = text(data.get('password'));
    if (id) await call('PATCH', `ftp-targets/${id}`, body);
    else await call('POST', 'ftp-targets', body);
    resetFtpForm();
    await loadFtp();
    say(id ? `FTP target ${id} changed.` : 'FTP target added.', 'ok');
  }

  async function ftpEnabled(t, enabled) {
    await call('PATCH', `ftp-targets/${t.id}`, { enabled });
    await loadFtp();
    say(enabled ? `FTP target ${t.name} resumed.` : `FTP target ${t.name} paused.`, 'ok');
  }

  async function deleteFtp(t) {
    if (!window.confirm(`Delete the FTP target ${t.name}?`)) return;
    await call('DELETE', `ftp-targets/${t.id}`);
    await loadFtp();
    say(`FTP target ${t.name} deleted.`, 'ok');
  }

  // ---- wiring -------------------------------------------------------------------------------

  function selectTab(name) {
    for (const b of document.querySelectorAll('nav.tabs button')) b.classList.toggle('active', b.dataset.tab === name);
    for (const s of document.querySelectorAll('section.tab')) s.hidden = s.id !== name;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      run(() => signIn(text($('login-key').value)));
    });
    $('logout').addEventListener('click', () => signOut());
    $('webhook-form').addEventListener('submit', (e) => {
      e.preventDefault();
      run(() => addWebhook(e.target));
    });
    $('wh-secret-new').addEventListener('click', newSecret);
    $('deliveries-close').addEventListener('click', closeDeliveries);
    $('ftp-form').addEventListener('submit', (e) => {
      e.preventDefault();
      run(() => saveFtp(e.target));
    });
    $('ftp-cancel').addEventListener('click', resetFtpForm);
    for (const b of document.querySelectorAll('nav.tabs button')) b.addEventListener('click', () => selectTab(b.dataset.tab));
    // A reload of the tab keeps the session (sessionStorage); a new tab signs in again.
    if (sessionStorage.getItem(KEY_ITEM)) run(() => signIn(sessionStorage.getItem(KEY_ITEM)));
    else show(false);
  });
})();
