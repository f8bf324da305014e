// Admin page of the trading supervisor: plain ES2020, no framework, no build step.
//
// The admin token lives in sessionStorage only and never in a URL: the state socket and chain
// sockets authenticate with their first message. The state arrives over /ws/admin (at most 4
// messages a second, only when something changed); ages and countdowns tick locally between
// messages.
'use strict';

(() => {
  const TOKEN_KEY = 'trading-supervisor.admin-token';
  const CHAIN_HEARTBEAT_MS = 30000;
  const $ = (id) => document.getElementById(id);

  let token = null;
  let socket = null;
  let socketRetryMs = 1000;
  let socketTimer = null;
  let lastState = null;
  // Server clock minus browser clock, from the latest state message.
  let clockOffsetMs = 0;

  // ---------------------------------------------------------------- DOM helpers

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function setText(el, text) {
    const t = text === null || text === undefined ? '' : String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function setClass(el, cls) {
    if (el.className !== cls) el.className = cls;
  }

  function badge(text, cls) {
    return h('span', { class: `badge ${cls}`, text });
  }

  // Fills `el` from a spec: a string, or {text, cls, badge, age, until, title}.
  //   badge: [text, cls] — a coloured state badge
  //   age: milliseconds old at the time of the state message; keeps counting up
  //   until: epoch milliseconds (server clock); counts down
  function apply(el, spec) {
    const s = typeof spec === 'object' && spec !== null ? spec : { text: spec };
    delete el.dataset.ageBase;
    delete el.dataset.until;
    if (s.badge) {
      const [text, cls] = s.badge;
      let b = el.firstElementChild;
      if (!b || el.childNodes.length !== 1 || b.tagName !== 'SPAN') {
        b = h('span');
        el.replaceChildren(b);
      }
      setClass(b, `badge ${cls}`);
      setText(b, text);
    } else if (s.age !== undefined && s.age !== null) {
      el.dataset.ageBase = String(s.age);
      el.dataset.ageAt = String(receivedAt);
      setText(el, formatAge(s.age));
    } else if (s.until !== undefined && s.until !== null) {
      el.dataset.until = String(s.until);
      el.dataset.prefix = s.prefix || '';
      setText(el, countdownText(el));
    } else {
      setText(el, s.text === undefined || s.text === null || s.text === '' ? '—' : s.text);
    }
    // The element's own classes stay; `cls` adds a state class.
    if (el.dataset.base === undefined) el.dataset.base = el.className;
    setClass(el, `${el.dataset.base} ${s.cls || ''}`.trim());
    if (s.title) el.title = s.title;
    else el.removeAttribute('title');
  }

  // Key/value rows, created once per label and updated in place.
  function kv(container, rows) {
    const existing = new Map();
    for (const row of container.children) existing.set(row.dataset.label, row);
    const seen = new Set();
    let previous = null;
    for (const [label, spec, id] of rows) {
      seen.add(label);
      let row = existing.get(label);
      if (!row) {
        const value = h('span', { id });
        row = h('div', { class: 'kv-row', 'data-label': label }, h('span', { class: 'k', text: label }), value);
      }
      apply(row.lastElementChild, spec);
      const next = previous ? previous.nextElementSibling : container.firstElementChild;
      if (row !== next) container.insertBefore(row, next);
      previous = row;
    }
    for (const [label, row] of existing) if (!seen.has(label)) row.remove();
  }

  // Table rows keyed by `key`, built once by `build` and refreshed by `update`: buttons in a
  // row survive updates, so a click is never lost to a re-render.
  function syncTable(table, items, key, build, update) {
    const tbody = table.tBodies[0];
    const existing = new Map();
    for (const tr of tbody.rows) existing.set(tr.dataset.key, tr);
    const seen = new Set();
    let previous = null;
    for (const item of items) {
      const k = String(key(item));
      seen.add(k);
      let tr = existing.get(k);
      if (!tr) {
        tr = build(item);
        tr.dataset.key = k;
      }
      update(tr, item);
      const next = previous ? previous.nextElementSibling : tbody.firstElementChild;
      if (tr !== next) tbody.insertBefore(tr, next);
      previous = tr;
    }
    for (const [k, tr] of existing) if (!seen.has(k)) tr.remove();
  }

  function cells(n, classes) {
    const tr = h('tr');
    for (let i = 0; i < n; i++) tr.append(h('td', { class: (classes && classes[i]) || '' }));
    return tr;
  }

  function fill(tr, specs) {
    specs.forEach((spec, i) => apply(tr.cells[i], spec));
  }

  function showEmpty(id, empty) {
    $(id).hidden = !empty;
  }

  // ---------------------------------------------------------------- formatting

  const numberFormats = new Map();
  function number(value, digits = 2) {
    if (value === null || value === undefined || Number.isNaN(value)) return '—';
    let f = numberFormats.get(digits);
    if (!f) {
      f = new Intl.NumberFormat('en-IN', { minimumFractionDigits: digits, maximumFractionDigits: digits });
      numberFormats.set(digits, f);
    }
    return f.format(value);
  }

  function integer(value) {
    return number(value, 0);
  }

  // Rupees with a sign: "+₹1,250.00", "−₹310.50".
  function money(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return '—';
    const sign = value > 0 ? '+' : value < 0 ? '−' : '';
    return `${sign}₹${number(Math.abs(value))}`;
  }

  function moneyCell(value, extra) {
    const cls = value > 0 ? 'pos' : value < 0 ? 'neg' : '';
    return { text: money(value), cls: [cls, extra].filter(Boolean).join(' ') };
  }

  function formatAge(ms) {
    if (ms === null || ms === undefined) return '—';
    if (ms < 10000) return `${(ms / 1000).toFixed(1)} s ago`;
    if (ms < 60000) return `${Math.round(ms / 1000)} s ago`;
    if (ms < 3600000) return `${Math.floor(ms / 60000)} min ago`;
    return `${(ms / 3600000).toFixed(1)} h ago`;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const d = Math.floor(s / 86400);
    const hh = Math.floor((s % 86400) / 3600);
    const mm = Math.floor((s % 3600) / 60);
    const ss = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    if (d > 0) return `${d}d ${hh}h ${two(mm)}m`;
    if (hh > 0) return `${hh}h ${two(mm)}m ${two(ss)}s`;
    if (mm > 0) return `${mm}m ${two(ss)}s`;
    return `${(Math.max(0, seconds)).toFixed(1)} s`;
  }

  function serverNow() {
    return Date.now() + clockOffsetMs;
  }

  function countdownText(el) {
    const left = (Number(el.dataset.until) - serverNow()) / 1000;
    return `${el.dataset.prefix || ''}${left > 0 ? 'in ' + duration(left) : 'now'}`;
  }

  function time(iso) {
    if (!iso) return '—';
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return iso;
    const sameDay = new Date().toDateString() === t.toDateString();
    return sameDay ? t.toLocaleTimeString() : t.toLocaleString();
  }

  function since(iso) {
    if (!iso) return null;
    const t = Date.parse(iso);
    return Number.isNaN(t) ? null : Math.max(0, serverNow() - t);
  }

  // ---------------------------------------------------------------- state colours

  function lifecycleClass(state) {
    switch (state) {
      case 'Running': return 'ok';
      case 'Starting': return 'info';
      case 'Degraded':
      case 'BackingOff': return 'warn';
      case 'Faulted': return 'bad';
      default: return 'off';
    }
  }

  function connectionClass(state) {
    switch (state) {
      case 'Live': return 'ok';
      case 'Connecting':
      case 'Authenticating': return 'info';
      case 'BackingOff': return 'warn';
      case 'Faulted': return 'bad';
      default: return 'off';
    }
  }

  const RISK_LABELS = {
    monitoring: 'Monitoring', triggered: 'Triggered', exiting: 'Exiting', exited: 'Exited',
    exit_failed: 'ExitFailed', paused: 'Paused',
  };

  function riskClass(state) {
    switch (state) {
      case 'monitoring': return 'ok';
      case 'triggered':
      case 'exiting':
      case 'paused': return 'warn';
      case 'exit_failed': return 'bad';
      default: return 'off';
    }
  }

  function phaseClass(phase) {
    return phase === 'Open' ? 'ok' : phase === 'PreOpen' ? 'warn' : 'off';
  }

  // ---------------------------------------------------------------- ticking ages

  let receivedAt = Date.now();

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll('[data-age-base]')) {
      const age = Number(el.dataset.ageBase) + (now - Number(el.dataset.ageAt));
      setText(el, formatAge(age));
    }
    for (const el of document.querySelectorAll('[data-until]')) setText(el, countdownText(el));
    setText($('server-clock'), new Date(serverNow()).toLocaleTimeString());
  }

  // ---------------------------------------------------------------- API

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = text;
      }
    }
    if (!resp.ok) {
      const message = data && data.error ? data.error.message : `HTTP ${resp.status}`;
      const err = new Error(message);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function toast(message, kind) {
    const el = h('div', { class: `toast ${kind || 'info'}`, role: 'status', text: message });
    $('toasts').append(el);
    setTimeout(() => el.remove(), kind === 'bad' ? 9000 : 4000);
  }

  // Resolves true when the person confirms.
  function confirmAction(title, message, okLabel) {
    return new Promise((resolve) => {
      const overlay = $('confirm');
      setText($('confirm-title'), title);
      setText($('confirm-message'), message);
      setText($('confirm-ok'), okLabel || 'Confirm');
      overlay.hidden = false;
      $('confirm-cancel').focus();
      const done = (answer) => {
        overlay.hidden = true;
        $('confirm-ok').removeEventListener('click', ok);
        $('confirm-cancel').removeEventListener('click', cancel);
        document.removeEventListener('keydown', key);
        resolve(answer);
      };
      const ok = () => done(true);
      const cancel = () => done(false);
      const key = (e) => {
        if (e.key === 'Escape') done(false);
      };
      $('confirm-ok').addEventListener('click', ok);
      $('confirm-cancel').addEventListener('click', cancel);
      document.addEventListener('keydown', key);
    });
  }

  async function act(button, run, success) {
    button.disabled = true;
    try {
      const result = await run();
      if (success) toast(typeof success === 'function' ? success(result) : success, 'ok');
    } catch (e) {
      toast(e.message, 'bad');
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- rendering

  function render(state) {
    lastState = state;
    renderHealth(state.health);
    renderSummary(state);
    renderService(state.supervisor);
    renderCalendar(state.calendar);
    renderFeed(state.connection);
    renderStrategies(state.strategies);
    renderPositions(state.positions, state.accounts.accounts);
    renderOrders(state.orders);
    renderStreams(state.streams, state.order_events, state.accounts.accounts);
    refreshRiskEventsOnChange(state.strategies);
    renderTree(state);
    renderRegistry(state.registry);
    renderAccounts(state.accounts);
    renderChains(state.chains);
  }

  function tile(id, label) {
    let el = $(id);
    if (!el) {
      el = h('div', { class: 'tile', id },
        h('div', { class: 'tile-label', text: label }),
        h('div', { class: 'tile-value' }),
        h('div', { class: 'tile-detail' }));
      $('summary').append(el);
    }
    return el;
  }

  function setTile(id, label, value, cls, detail) {
    const el = tile(id, label);
    setClass(el, `tile ${cls}`);
    apply(el.children[1], value);
    apply(el.children[2], detail);
  }

  function renderSummary(s) {
    const sup = s.supervisor;
    setTile('tile-service', 'Service', sup.running ? 'Running' : 'Stopped',
      sup.running ? 'ok' : (sup.manually_stopped ? 'warn' : 'off'), sup.reason);
    const cal = s.calendar;
    setTile('tile-market', 'Market', cal.phase, phaseClass(cal.phase),
      cal.next_change_at
        ? { until: Date.parse(cal.next_change_at), prefix: `${cal.next_phase} ` }
        : (cal.always_open ? 'always open' : 'no change scheduled'));
    const c = s.connection;
    setTile('tile-feed', 'Feed', c.state, connectionClass(c.state),
      c.state === 'Live'
        ? (c.last_tick_age_ms !== null ? { age: c.last_tick_age_ms } : 'no tick yet')
        : (c.next_retry_at ? { until: Date.parse(c.next_retry_at), prefix: 'retry ' } : (c.last_error || '')));
    const strategies = s.strategies;
    const live = strategies.filter((x) => x.pnl !== null);
    const total = live.reduce((sum, x) => sum + x.pnl, 0);
    const worst = strategies.some((x) => x.state === 'exit_failed') ? 'bad'
      : strategies.some((x) => ['triggered', 'exiting', 'paused'].includes(x.state)) ? 'warn'
        : strategies.length ? 'ok' : 'off';
    setTile('tile-strategies', 'Strategies P&L', live.length ? money(total) : '—', worst,
      `${strategies.filter((x) => x.state === 'monitoring').length} of ${strategies.length} monitoring · ${s.monitor.open_legs} open legs`);
    const r = s.registry;
    setTile('tile-subscriptions', 'Subscriptions', `${r.symbols} / ${r.max_symbols}`,
      r.rejected > 0 ? 'warn' : 'ok', `${number(c.messages_per_s, 1)} msgs/s · ${integer(r.ticks_dropped)} dropped`);
    const ch = s.chains;
    setTile('tile-chains', 'Chain sessions', String(ch.sessions.length), lifecycleClass(ch.state),
      ch.enabled ? `${ch.opened_total} opened` : 'disabled');
  }

  // What GET /health answers: a banner with every reason while the service is degraded.
  function renderHealth(health) {
    const banner = $('health-banner');
    const reasons = health ? health.reasons : [];
    banner.hidden = reasons.length === 0;
    const text = reasons.join('\n');
    if (banner.dataset.text === text) return;
    banner.dataset.text = text;
    if (reasons.length === 0) {
      banner.replaceChildren();
      return;
    }
    banner.replaceChildren(
      h('strong', { text: 'Degraded (GET /health)' }),
      h('ul', null, reasons.map((r) => h('li', { text: r }))));
  }

  function renderService(sup) {
    kv($('service-kv'), [
      ['State', { badge: [sup.running ? 'Running' : 'Stopped', sup.running ? 'ok' : 'off'] }, 'service-state'],
      ['Why', sup.reason],
      ['Since', { age: since(sup.since), title: sup.since }],
      ['Feed account', sup.feed_account ? sup.feed_account.name : 'none'],
      ['Account reachable', sup.feed_account_reachable ? 'yes' : { text: 'no', cls: 'error' }],
      ['Feed', sup.feed_degraded
        ? { text: `degraded: ${sup.feed_degraded_reason}`, cls: 'error' }
        : (sup.running ? (sup.feed_live ? 'live' : 'connecting') : '—'), 'service-feed'],
      ['Stopped by hand', sup.manually_stopped ? 'yes' : 'no'],
    ]);
    $('service-start').disabled = !sup.manually_stopped;
    $('service-stop').disabled = sup.manually_stopped;
    renderEvents($('service-transitions'), sup.transitions.slice(-6).reverse().map((t) => ({
      at: t.at, label: t.running ? 'started' : 'stopped', cls: t.running ? 'ok' : 'off', detail: t.reason,
    })));
  }

  function renderEvents(list, events) {
    const items = events.map((e) => h('li', null,
      h('span', { class: 'event-time', text: time(e.at) }),
      badge(e.label, e.cls),
      h('span', { class: 'event-detail', text: e.detail || '' })));
    if (items.length === 0) items.push(h('li', { class: 'muted', text: 'none yet' }));
    const before = list.textContent;
    const fresh = h('ol', null, items);
    if (fresh.textContent !== before) list.replaceChildren(...fresh.children);
  }

  function renderCalendar(cal) {
    const rows = [
      ['Phase', { badge: [cal.phase, phaseClass(cal.phase)] }, 'calendar-phase'],
      ['Next change', cal.next_change_at
        ? { until: Date.parse(cal.next_change_at), prefix: `${cal.next_phase} ` }
        : (cal.always_open ? 'never (always open)' : 'none scheduled'), 'calendar-countdown'],
      ['At', cal.next_change_at ? time(cal.next_change_at) : '—'],
      ['Phase since', { age: since(cal.since), title: cal.since }],
      ['Holiday today', cal.holiday_today || 'no'],
      ['Special sessions today', cal.special_today.length
        ? cal.special_today.map((x) => `${x.name} ${x.start_time}–${x.end_time}`).join(', ') : 'none'],
      ['Templates', cal.templates.map((t) => `${t.name} (${t.exchange}, ${t.timezone})${t.error ? ' — ' + t.error : ''}`).join('; ') || 'none active'],
      ['Actor', { badge: [cal.state, lifecycleClass(cal.state)] }],
    ];
    if (cal.last_error) rows.push(['Last error', { text: cal.last_error, cls: 'error' }]);
    kv($('calendar-kv'), rows);
    renderCalendarWarnings(cal.warnings || []);
  }

  // Years the next 30 days reach without holidays loaded: a banner until they are imported.
  function renderCalendarWarnings(warnings) {
    const banner = $('calendar-warnings');
    const text = warnings.map((w) => w.message).join('\n');
    banner.hidden = warnings.length === 0;
    if (banner.dataset.text === text) return;
    banner.dataset.text = text;
    if (warnings.length === 0) {
      banner.replaceChildren();
      return;
    }
    banner.replaceChildren(
      h('strong', { text: 'Holidays missing' }),
      h('ul', null, warnings.map((w) => h('li', { text: w.message }))),
      h('p', null, 'Import the exchange\'s list: ', h('code', { text: 'supervisor calendar import FILE' }),
        ' or ', h('code', { text: 'POST /api/v1/calendar/holidays/import' }), '.'));
  }

  function renderFeed(c) {
    const rows = [
      ['State', { badge: [c.state, connectionClass(c.state)] }, 'feed-state'],
      ['Account', c.account ? `${c.account} · key ${c.api_key}` : 'none'],
      ['Last tick', c.last_tick_age_ms !== null ? { age: c.last_tick_age_ms } : 'none yet', 'feed-last-tick'],
      ['Messages/s', number(c.messages_per_s, 1), 'feed-rate'],
      ['Messages', integer(c.messages_received)],
      ['Connected since', c.connected_since ? { age: since(c.connected_since), title: c.connected_since } : '—'],
      ['Reconnects', integer(c.reconnects)],
      ['Symbols held', integer(c.held_symbols)],
    ];
    if (c.state !== 'Live') {
      rows.push(['Attempt', String(c.attempt)]);
      rows.push(['Next retry', c.next_retry_at ? { until: Date.parse(c.next_retry_at) } : '—']);
    }
    if (c.malformed) rows.push(['Malformed frames', integer(c.malformed)]);
    if (c.last_error) rows.push(['Last error', { text: c.last_error, cls: 'error' }]);
    kv($('feed-kv'), rows);
    $('reconnect').disabled = c.state === 'Stopped' || c.state === 'Idle' || c.state === 'Faulted';
    const eventClass = { connected: 'ok', reconnect: 'info', disconnected: 'warn', failed: 'bad', stopped: 'off', retargeted: 'info' };
    renderEvents($('feed-events'), c.recent_events.slice(-8).reverse().map((e) => ({
      at: e.at, label: e.event, cls: eventClass[e.event] || 'off', detail: e.detail,
    })));
  }

  function node(name, state, restarts, detail, children) {
    return h('li', null,
      h('div', { class: 'tree-node' },
        h('span', { class: `dot ${lifecycleClass(state)}`, title: state }),
        h('span', { class: 'tree-name', text: name }),
        badge(state, lifecycleClass(state)),
        restarts ? h('span', { class: 'restarts', text: `${restarts} restart${restarts === 1 ? '' : 's'}` }) : null,
        detail ? h('span', { class: 'tree-detail', text: detail }) : null),
      children && children.length ? h('ul', null, children) : null);
  }

  function renderTree(s) {
    const r = s.registry;
    const sessions = s.chains.sessions.map((x) =>
      node('ChainSessionActor', x.state, x.restarts, `${x.underlying} ${x.expiry} · ${x.viewers} viewer${x.viewers === 1 ? '' : 's'}`));
    const tree = node('SupervisorActor', s.supervisor.state, s.supervisor.restarts, s.supervisor.reason, [
      node('CalendarActor', s.calendar.state, s.calendar.restarts, s.calendar.phase),
      node('AccountMonitorActor', s.accounts.lifecycle, s.accounts.restarts,
        s.accounts.feed_account ? `feed on ${s.accounts.feed_account.name}` : 'no feed account'),
      node('StreamsActor', s.streams.streams.every((x) => x.state === 'Live') ? 'Running' : 'Degraded', 0,
        `${s.streams.streams.length} account socket${s.streams.streams.length === 1 ? '' : 's'}`,
        s.streams.streams.map((x) => node('ConnectionActor', x.lifecycle, x.restarts,
          `${x.account || '—'} · ${x.state}${x.feed ? ' · feed' : ''}${x.orders.subscribed ? ' · order updates' : ''}`,
          x.feed ? [node('SubscriptionRegistryActor', r.state, r.restarts, `${r.symbols} symbols · ${r.consumers.length} consumers`)] : []))),
      node('OrderEventRouter', s.order_events.state, s.order_events.restarts,
        `${s.order_events.accounts.reduce((n, a) => n + a.events, 0)} order updates`),
      node('PositionMonitorActor', s.monitor.state, s.monitor.restarts,
        `${s.monitor.open_legs} open legs · ${s.monitor.monitoring ? 'monitoring' : 'not monitoring'}`,
        s.strategies.map((x) => node('RiskActor', x.lifecycle, x.restarts,
          `${x.strategy} · ${RISK_LABELS[x.state] || x.state}${x.degraded ? ' · ' + x.degraded : ''}`))),
      node('OrderGatewayActor', s.orders.state, s.orders.restarts,
        `${s.orders.exits.length} exits in flight · ${s.orders.orders_sent} orders sent`),
      node('ChainDirectoryActor', s.chains.state, s.chains.restarts, `${s.chains.sessions.length} sessions`, sessions),
    ]);
    const list = $('actor-tree');
    if (!list.firstElementChild || list.firstElementChild.outerHTML !== tree.outerHTML) list.replaceChildren(tree);
  }

  function limitsText(l) {
    const parts = [];
    if (l.max_loss !== null) parts.push(`loss ${money(-l.max_loss)}`);
    if (l.max_profit !== null) parts.push(`profit ${money(l.max_profit)}`);
    if (l.trailing) {
      const t = l.trailing;
      const value = t.kind === 'amount' ? `₹${number(t.value)}` : t.kind === 'points' ? `${number(t.value)} pts` : `${number(t.value)} %`;
      parts.push(`trail ${value}${t.activation ? ' from ' + money(t.activation) : ''}`);
    }
    if (l.exit_confirm_ms) parts.push(`confirm ${l.exit_confirm_ms} ms`);
    return parts.join(' · ') || 'none';
  }

  function latencyText(us) {
    if (us === null || us === undefined) return '—';
    return us < 1000 ? `${us} µs` : `${number(us / 1000, 1)} ms`;
  }

  function renderStrategies(list) {
    setText($('strategies-count'), String(list.length));
    syncTable($('strategies-table'), list, (x) => x.strategy_id,
      (x) => {
        const tr = cells(10, ['', '', 'num pnl', 'num', 'num', 'limits', 'num', 'num', '', 'actions']);
        const button = h('button', { class: 'danger small', type: 'button', text: 'Exit' });
        button.addEventListener('click', () => exitStrategy(button, x.strategy_id, tr.dataset.name));
        tr.cells[9].append(button);
        return tr;
      },
      (tr, x) => {
        tr.dataset.name = x.strategy;
        fill(tr, [
          { text: `${x.strategy} · run ${x.run_id}`, title: `strategy ${x.strategy_id}` },
          { badge: [RISK_LABELS[x.state] || x.state, riskClass(x.state)], title: x.degraded || x.last_error || '' },
          moneyCell(x.pnl),
          x.peak !== null ? money(x.peak) : '—',
          x.stop !== null ? money(x.stop) : '—',
          limitsText(x.limits),
          x.stale_legs ? { text: `${x.open_legs} (${x.stale_legs} stale)`, cls: 'warn-text' } : String(x.open_legs),
          latencyText(x.decision_latency.p99_us),
          x.last_trigger ? `${x.last_trigger.event} at ${money(x.last_trigger.pnl)} · ${time(x.last_trigger.at)}` : '—',
        ]);
        const button = tr.cells[9].firstElementChild;
        button.disabled = x.open_legs === 0 || x.state === 'exiting' || x.state === 'triggered';
      });
    showEmpty('strategies-empty', list.length === 0);
  }

  function renderPositions(list, accounts) {
    const accountNames = new Map(accounts.map((a) => [a.id, a.name]));
    setText($('positions-count'), String(list.length));
    syncTable($('positions-table'), list, (x) => x.execution_id,
      () => cells(10, ['', '', '', '', 'num', 'num', 'num', 'num pnl', '', 'nowrap']),
      (tr, x) => fill(tr, [
        x.strategy,
        accountNames.get(x.account_id) || `#${x.account_id}`,
        `${x.exchange}:${x.symbol} · ${x.product}`,
        { badge: [x.action, x.action === 'BUY' ? 'info' : 'warn'] },
        integer(x.quantity),
        number(x.entry_price),
        number(x.ltp),
        moneyCell(x.pnl),
        x.status,
        x.price_age_ms !== null
          ? { age: x.price_age_ms, cls: x.stale ? 'warn-text' : '', title: `${x.price_source || ''}${x.stale ? ' · stale' : ''}` }
          : 'no price yet',
      ]));
    showEmpty('positions-empty', list.length === 0);
  }

  // An exit's state (docs/exits.md): in doubt and rejected need an eye, failed a human.
  function exitStateClass(state) {
    return { sending: 'info', in_doubt: 'warn', working: 'info', partially_filled: 'info', filled: 'ok', rejected: 'warn', failed: 'bad' }[state] || 'off';
  }

  function renderOrders(o) {
    kv($('orders-kv'), [
      ['Gateway', { badge: [o.state, lifecycleClass(o.state)] }],
      ['Orders sent', integer(o.orders_sent)],
      ['Orders failed', { text: integer(o.orders_failed), cls: o.orders_failed ? 'warn-text' : '' }],
      ['Legs exited', integer(o.legs_exited)],
      ['Legs failed', { text: integer(o.legs_failed), cls: o.legs_failed ? 'error' : '' }],
      ['Orders in doubt', { text: integer(o.orders_in_doubt), cls: o.orders_in_doubt ? 'warn-text' : '' }],
      ['Rate-limited', integer(o.rate_limited)],
      ['Mismatches', { text: integer(o.mismatches), cls: o.mismatches ? 'error' : '' }],
      ['Lanes', o.accounts.map((a) => `${a.account} (${a.api_key})${a.queued ? ' · ' + a.queued + ' queued' : ''}`).join(', ') || 'none'],
    ]);
    syncTable($('exits-table'), o.exits, (x) => x.execution_id,
      () => cells(8, ['', '', 'num', '', '', 'num', '', '']),
      (tr, x) => fill(tr, [
        `${x.exchange}:${x.symbol} (leg ${x.execution_id})`,
        x.action,
        `${integer(x.filled)} / ${integer(x.quantity)}${x.unheld ? ` (${integer(x.unheld)} not held)` : ''}`,
        { badge: [x.state, exitStateClass(x.state)] },
        x.orders.map((r) => `${r.order_id || 'no id'} ${r.state} ${integer(r.filled)}/${integer(r.quantity)}`).join(' · ') || 'none yet',
        String(x.attempt),
        x.reason,
        x.last_error ? { text: x.last_error, cls: 'error' } : (x.waiting_for || ''),
      ]));
    showEmpty('exits-empty', o.exits.length === 0);
  }

  // Risk events live in the database; the page reads them when a strategy's risk state or
  // last trigger changes, and every 15 s.
  let riskSignature = null;
  let riskEventsAt = 0;

  function refreshRiskEventsOnChange(strategies) {
    const signature = strategies.map((x) => `${x.strategy_id}:${x.run_id}:${x.state}:${x.feed_degraded}:${x.last_trigger ? x.last_trigger.at : ''}`).join('|');
    if (signature === riskSignature && Date.now() - riskEventsAt < 15000) return;
    riskSignature = signature;
    riskEventsAt = Date.now();
    const names = new Map(strategies.map((x) => [x.strategy_id, x.strategy]));
    api('GET', '/api/v1/risk-events?limit=20')
      .then((data) => renderRiskEvents(data.events, names))
      .catch((e) => toast(`risk events: ${e.message}`, 'bad'));
  }

  // One socket per account key (docs/order-updates.md): its state, whether it carries the
  // market-data feed, and its order updates; then the latest order events of every account.
  function renderStreams(streams, events, accounts) {
    const name = (id) => (accounts.find((a) => a.id === id) || {}).name || `account ${id}`;
    const byAccount = new Map(events.accounts.map((a) => [a.account_id, a]));
    syncTable($('streams-table'), streams.streams, (x) => x.account_id,
      () => cells(9, ['', '', '', '', 'num', '', 'num', 'num', '']),
      (tr, x) => {
        const e = byAccount.get(x.account_id) || {};
        fill(tr, [
          x.account || '—',
          { badge: [x.state, lifecycleClass(x.lifecycle)] },
          x.feed ? 'market data + order updates' : 'order updates',
          x.orders.subscribed ? { badge: ['flowing', 'ok'] } : { badge: ['not flowing', 'warn'] },
          String(x.orders.events_last_minute),
          x.orders.last_event_at ? { age: since(x.orders.last_event_at), title: x.orders.last_event_at } : 'none yet',
          integer(e.matched || 0),
          { text: integer(e.unmatched || 0), cls: e.unmatched ? 'warn-text' : '' },
          x.last_error ? { text: x.last_error, cls: 'error' } : (e.routing_failures ? { text: `${e.routing_failures} not delivered`, cls: 'error' } : ''),
        ]);
      });
    showEmpty('streams-empty', streams.streams.length === 0);
    const recent = events.accounts
      .flatMap((a) => a.recent.map((r) => Object.assign({ account_id: a.account_id }, r)))
      .sort((a, b) => (a.at < b.at ? 1 : -1))
      .slice(0, 20);
    syncTable($('order-events-table'), recent, (r) => `${r.account_id}:${r.order_id}:${r.at}:${r.status}`,
      () => cells(8, ['', '', 'mono', '', '', '', 'num', '']),
      (tr, r) => fill(tr, [
        { age: since(r.at), title: r.at },
        name(r.account_id),
        r.order_id,
        r.symbol,
        r.action,
        r.status,
        r.filled === null ? '—' : `${number(r.filled, 0)} / ${r.quantity === null ? '?' : number(r.quantity, 0)}`,
        r.matched ? 'yes' : { text: 'no (recorded)', cls: 'warn-text' },
      ]));
    showEmpty('order-events-empty', recent.length === 0);
  }

  function renderRiskEvents(events, names) {
    const eventClass = { max_loss: 'bad', max_profit: 'ok', trailing_stop: 'warn', manual_exit: 'info', kill_switch: 'bad', exit_failed: 'bad', exit_completed: 'off', resumed: 'info', feed_degraded: 'warn', feed_restored: 'ok', pnl_invalid: 'bad', mismatch: 'bad' };
    syncTable($('risk-events-table'), events, (x) => x.id,
      () => cells(6, ['nowrap', '', '', 'num', 'num', '']),
      (tr, x) => fill(tr, [
        time(x.created_at),
        names.get(x.strategy_id) || `#${x.strategy_id}`,
        { badge: [x.event_type, eventClass[x.event_type] || 'off'] },
        moneyCell(x.pnl),
        x.threshold !== null ? number(x.threshold) : '—',
        x.message ? `${x.action} — ${x.message}` : x.action,
      ]));
    showEmpty('risk-events-empty', events.length === 0);
  }

  async function exitStrategy(button, id, name) {
    const ok = await confirmAction(`Exit ${name}?`,
      'Every open leg of this strategy\'s run is closed with a MARKET order on its own account, now.',
      'Exit strategy');
    if (ok) {
      act(button, () => api('POST', `/api/v1/strategies/${id}/exit`),
        (r) => `Exit sent for ${name}: ${r.exit.queued.length} leg(s) queued`);
    }
  }

  function renderRegistry(r) {
    setText($('subscriptions-count'), `${r.symbols} / ${r.max_symbols}`);
    kv($('registry-kv'), [
      ['Ticks in', integer(r.ticks_in)],
      ['Fanned out', integer(r.ticks_delivered)],
      ['Dropped (coalesced)', { text: integer(r.ticks_dropped), cls: r.ticks_dropped ? 'warn-text' : '' }],
      ['Rejected symbols', { text: integer(r.rejected), cls: r.rejected ? 'warn-text' : '' }],
    ]);
    syncTable($('subscriptions-table'), r.subscriptions, (x) => `${x.exchange}:${x.symbol}`,
      () => cells(6, ['', '', 'holders', 'num', 'nowrap', 'num']),
      (tr, x) => fill(tr, [
        x.rejected ? { text: `${x.exchange}:${x.symbol} — ${x.rejected}`, cls: 'error' } : `${x.exchange}:${x.symbol}`,
        x.mode_label,
        x.holders.join(', '),
        number(x.ltp),
        x.last_tick_age_ms !== null ? { age: x.last_tick_age_ms } : 'none yet',
        integer(x.ticks),
      ]));
    showEmpty('subscriptions-empty', r.subscriptions.length === 0);
    syncTable($('consumers-table'), r.consumers, (x) => x.id,
      () => cells(5, ['', 'num', 'num', 'num', 'num']),
      (tr, x) => fill(tr, [x.label, integer(x.keys), integer(x.delivered),
        { text: integer(x.dropped), cls: x.dropped ? 'warn-text' : '' }, integer(x.pending)]));
  }

  function renderAccounts(a) {
    kv($('accounts-kv'), [
      ['Monitor', { badge: [a.lifecycle, lifecycleClass(a.lifecycle)] }],
      ['Feed account', a.feed_account ? `${a.feed_account.name} (${a.reachable ? 'reachable' : 'unreachable'})` : 'none'],
      ['Decision', a.reason],
    ]);
    syncTable($('accounts-table'), a.accounts, (x) => x.id,
      () => cells(7, ['', 'mono', '', '', 'num', 'num', '']),
      (tr, x) => fill(tr, [
        x.name,
        x.api_key_hint,
        [x.is_primary ? 'primary' : 'backup', x.is_active ? '' : 'inactive'].filter(Boolean).join(', '),
        x.last_ping_at ? { age: since(x.last_ping_at), title: x.last_ping_at } : 'never',
        x.last_latency_ms !== null ? `${x.last_latency_ms} ms` : '—',
        { text: String(x.consecutive_failures), cls: x.consecutive_failures ? 'warn-text' : '' },
        x.last_error ? { text: x.last_error, cls: 'error' } : '',
      ]));
    showEmpty('accounts-empty', a.accounts.length === 0);
  }

  function renderChains(ch) {
    setText($('chains-count'), ch.enabled ? String(ch.sessions.length) : 'disabled');
    syncTable($('chains-table'), ch.sessions, (x) => x.id,
      () => cells(8, ['mono', '', '', 'num', 'num', 'num', 'num', '']),
      (tr, x) => fill(tr, [
        x.id.slice(0, 8),
        { badge: [x.state, lifecycleClass(x.state)] },
        `${x.underlying} ${x.expiry} ±${x.strikes}`,
        number(x.atm_strike, 0),
        number(x.underlying_ltp),
        integer(x.symbols),
        integer(x.viewers),
        `${Math.round(x.lease_expires_in_ms / 1000)} s left`,
      ]));
    showEmpty('chains-empty', ch.sessions.length === 0);
    $('chain-open').disabled = !ch.enabled;
  }

  // ---------------------------------------------------------------- state socket

  function setSocketStatus(text, cls) {
    setText($('socket-text'), text);
    setClass($('socket-dot'), `live-dot ${cls}`);
  }

  function connectState() {
    clearTimeout(socketTimer);
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/ws/admin`);
    socket = ws;
    setSocketStatus('connecting…', 'info');
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ action: 'authenticate', token }));
    });
    ws.addEventListener('message', (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (msg.type === 'state') {
        socketRetryMs = 1000;
        receivedAt = Date.now();
        const server = Date.parse(msg.server_time);
        if (!Number.isNaN(server)) clockOffsetMs = server - receivedAt;
        setSocketStatus('live', 'ok');
        render(msg.state);
        tick();
      } else if (msg.type === 'error') {
        setSocketStatus(`state unavailable: ${msg.message}`, 'bad');
      }
    });
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === 4401) {
        signOut('The admin token was refused.');
        return;
      }
      if (!token) return;
      setSocketStatus(`disconnected; retrying in ${Math.round(socketRetryMs / 1000)} s`, 'warn');
      socketTimer = setTimeout(connectState, socketRetryMs);
      socketRetryMs = Math.min(socketRetryMs * 2, 15000);
    });
  }

  // ---------------------------------------------------------------- sign in / out

  async function signIn(candidate) {
    const resp = await fetch('/api/v1/state', { headers: { Authorization: `Bearer ${candidate}` } });
    if (resp.status === 401) throw new Error('That token was refused.');
    if (!resp.ok) throw new Error(`The service answered HTTP ${resp.status}.`);
    const state = await resp.json();
    token = candidate;
    sessionStorage.setItem(TOKEN_KEY, candidate);
    $('login-view').hidden = true;
    $('app-view').hidden = false;
    $('topbar-status').hidden = false;
    $('topbar-actions').hidden = false;
    receivedAt = Date.now();
    render(state);
    connectState();
  }

  function signOut(reason) {
    closeChain();
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(socketTimer);
    if (socket) {
      const ws = socket;
      socket = null;
      ws.close();
    }
    $('app-view').hidden = true;
    $('topbar-status').hidden = true;
    $('topbar-actions').hidden = true;
    $('login-view').hidden = false;
    setText($('login-error'), reason || '');
    $('login-token').value = '';
    $('login-token').focus();
  }

  // ---------------------------------------------------------------- option chain viewer

  let chain = null;

  async function openChain(underlying, exchange, strikes) {
    if (chain) await closeChain();
    const created = await api('POST', '/api/v1/chain-sessions', { underlying, exchange, strikes });
    const current = { id: created.id, socket: null, heartbeat: null };
    chain = current;
    $('chain-table').tBodies[0].replaceChildren();
    setText($('chain-title'), `${created.underlying} · ${created.expiry}`);
    setText($('chain-meta'), `ATM ${number(created.atm_strike, 0)} · step ${number(created.strike_step, 0)} · ±${created.strikes} strikes`);
    setText($('chain-status'), 'waiting for the first snapshot…');
    $('chain-viewer').hidden = false;
    current.heartbeat = setInterval(() => {
      api('POST', `/api/v1/chain-sessions/${encodeURIComponent(current.id)}/heartbeat`)
        .catch((e) => setText($('chain-status'), `heartbeat failed: ${e.message}`));
    }, CHAIN_HEARTBEAT_MS);
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/ws/chain/${encodeURIComponent(current.id)}`);
    current.socket = ws;
    ws.addEventListener('open', () => ws.send(JSON.stringify({ action: 'authenticate', token })));
    ws.addEventListener('message', (event) => {
      if (chain !== current) return;
      try {
        renderChain(JSON.parse(event.data));
      } catch (_) {
        setText($('chain-status'), 'unreadable snapshot');
      }
    });
    ws.addEventListener('close', (event) => {
      if (chain === current) setText($('chain-status'), `stream closed (${event.code}${event.reason ? ': ' + event.reason : ''})`);
    });
  }

  async function closeChain() {
    const current = chain;
    chain = null;
    $('chain-viewer').hidden = true;
    if (!current) return;
    clearInterval(current.heartbeat);
    if (current.socket) current.socket.close();
    try {
      await api('DELETE', `/api/v1/chain-sessions/${encodeURIComponent(current.id)}`);
    } catch (e) {
      if (e.status !== 404) toast(`closing the chain session: ${e.message}`, 'bad');
    }
  }

  // A call's cells read outwards from the strike: OI, volume, bid, ask, LTP | strike | LTP, bid,
  // ask, volume, OI for the put.
  function leg(q, side) {
    if (!q) return ['—', '—', '—', '—', '—'];
    return side === 'ce'
      ? [integer(q.oi), integer(q.volume), number(q.bid), number(q.ask), number(q.ltp)]
      : [number(q.ltp), number(q.bid), number(q.ask), integer(q.volume), integer(q.oi)];
  }

  function renderChain(snap) {
    setText($('chain-meta'),
      `${snap.underlying} ${number(snap.underlying_ltp)} · ATM ${number(snap.atm_strike, 0)} · step ${number(snap.strike_step, 0)}`);
    setText($('chain-status'), `updated ${time(snap.updated_at)}`);
    const ltp = snap.underlying_ltp;
    syncTable($('chain-table'), snap.rows, (r) => r.strike,
      () => cells(11, ['num', 'num', 'num', 'num', 'num ltp', 'num strike', 'num ltp', 'num', 'num', 'num', 'num']),
      (tr, r) => {
        fill(tr, [...leg(r.ce, 'ce'), number(r.strike, 0), ...leg(r.pe, 'pe')]);
        const itmCall = ltp !== null && r.strike < ltp;
        const itmPut = ltp !== null && r.strike > ltp;
        setClass(tr, [r.strike === snap.atm_strike ? 'atm' : '', itmCall ? 'itm-ce' : '', itmPut ? 'itm-pe' : ''].filter(Boolean).join(' '));
      });
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $('login-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = $('login-submit');
      button.disabled = true;
      setText($('login-error'), '');
      try {
        await signIn($('login-token').value.trim());
      } catch (e) {
        setText($('login-error'), e.message);
      } finally {
        button.disabled = false;
      }
    });
    $('logout').addEventListener('click', () => signOut(''));

    $('service-start').addEventListener('click', (e) => act(e.currentTarget,
      () => api('POST', '/api/v1/service/start'), 'Service started'));
    $('service-stop').addEventListener('click', async (e) => {
      const button = e.currentTarget;
      const ok = await confirmAction('Stop the service?',
        'The feed connection closes and market-hours monitoring stops until you start it again, whatever the calendar says. Exits already sent are not interrupted.',
        'Stop service');
      if (ok) act(button, () => api('POST', '/api/v1/service/stop'), 'Service stopped');
    });
    $('reconnect').addEventListener('click', async (e) => {
      const button = e.currentTarget;
      const ok = await confirmAction('Reconnect the feed?',
        'The market-data socket is closed and opened again after the initial backoff delay; every subscription is sent again.',
        'Reconnect');
      if (ok) act(button, () => api('POST', '/api/v1/connection/reconnect'), 'Reconnecting the feed');
    });
    $('kill-switch').addEventListener('click', async (e) => {
      const button = e.currentTarget;
      const ok = await confirmAction('Kill switch: exit everything?',
        'Every risk actor is paused and every open leg on every account is closed with a MARKET order now. Resume strategies one by one afterwards.',
        'Exit everything');
      if (ok) {
        act(button, () => api('POST', '/api/v1/kill-switch'),
          (r) => `Kill switch: ${r.strategies_paused.length} strategies paused, ${r.exits.queued.length} legs queued`);
      }
    });
    $('chain-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const [underlying, exchange] = $('chain-underlying').value.split('|');
      const strikes = Number($('chain-strikes').value) || 5;
      act($('chain-open'), () => openChain(underlying, exchange, strikes));
    });
    $('chain-close').addEventListener('click', () => closeChain());
    window.addEventListener('pagehide', () => {
      if (!chain || !token) return;
      fetch(`/api/v1/chain-sessions/${encodeURIComponent(chain.id)}`, {
        method: 'DELETE', keepalive: true, headers: { Authorization: `Bearer ${token}` },
      });
    });
    setInterval(tick, 200);

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      signIn(saved).catch((e) => signOut(e.message));
    } else {
      $('login-token').focus();
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
  else wire();
})();
