// The state browser's page: a hash-routed view over the JSON API of motia_state/ui/server.py.
// Every value is put into the page as text nodes (never as HTML), so a stored "<script>" is shown, not run.
"use strict";

const TOKEN = document.querySelector('meta[name="motia-state-token"]').content;
const READ_ONLY = document.querySelector('meta[name="motia-state-read-only"]').content === "true";
const OPS = ["eq", "neq", "gt", "gte", "lt", "lte", "contains", "notContains", "startsWith", "endsWith",
  "isNull", "isNotNull"];
const POLL_MS = 2000;

const main = document.getElementById("main");
let info = null;          // GET /api/info
let view = null;          // the current page: {refresh(), onChange(change), close()}
let events = null;        // the EventSource of the current page
let poller = null;        // the polling timer when no event stream is available

// --- small helpers ---------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") { for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn); }
    else if (name === "dataset") { Object.assign(el.dataset, value); }
    else if (value === true) { el.setAttribute(name, ""); }
    else { el.setAttribute(name, String(value)); }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function enc(text) { return encodeURIComponent(text); }
function scopeHref(scope) { return "#/scope/" + enc(scope); }
function entryHref(scope, key) { return "#/entry/" + enc(scope) + "/" + enc(key); }
function editHref(scope, key) { return "#/edit/" + enc(scope) + "/" + enc(key); }
function historyHref(scope, key) { return "#/history/" + enc(scope) + "/" + enc(key); }

class ApiError extends Error {
  constructor(status, message, field) { super(message); this.status = status; this.field = field; }
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const qs = query.toString();
  const response = await fetch(path + (qs ? "?" + qs : ""), {headers: {"Accept": "application/json"}});
  return answer(response);
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Motia-State-Token": TOKEN},
    body: JSON.stringify(body),
  });
  return answer(response);
}

async function answer(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = (body && body.error) || {message: response.status + " " + response.statusText};
    throw new ApiError(response.status, error.message, error.field);
  }
  return body;
}

function flash(text, kind) {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = kind || "ok";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

function confirmDialog(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), {once: true});
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function failure(error) {
  return h("p", {class: "error", id: "page-error"}, error.message || String(error));
}

// --- values as collapsible JSON ------------------------------------------------------------------------------

function tree(value, depth) {
  depth = depth || 0;
  if (value === null) return h("span", {class: "j-null"}, "null");
  if (Array.isArray(value)) {
    if (value.length === 0) return h("span", {class: "j-empty"}, "[]");
    return h("details", {class: "j-list", open: depth < 2},
      h("summary", {}, `[ ${value.length} item${value.length === 1 ? "" : "s"} ]`),
      h("ol", {start: 0}, value.map((v) => h("li", {}, tree(v, depth + 1)))));
  }
  if (typeof value === "object") {
    const names = Object.keys(value);
    if (names.length === 0) return h("span", {class: "j-empty"}, "{}");
    return h("details", {class: "j-object", open: depth < 2},
      h("summary", {}, `{ ${names.length} field${names.length === 1 ? "" : "s"} }`),
      h("dl", {}, names.map((n) => [h("dt", {}, n), h("dd", {}, tree(value[n], depth + 1))])));
  }
  if (typeof value === "string") return h("span", {class: "j-string"}, JSON.stringify(value));
  return h("span", {class: "j-" + typeof value}, JSON.stringify(value));
}

// --- time left -----------------------------------------------------------------------------------------------

function ttlCell(ttl) {
  // Counted down from the server's answer, so the browser's clock does not matter.
  const el = h("span", {class: "ttl"});
  if (ttl === null || ttl === undefined) { el.textContent = "no expiry"; el.classList.add("none"); return el; }
  el.dataset.deadline = String(performance.now() + ttl * 1000);
  showTtl(el);
  return el;
}

function showTtl(el) {
  const left = (Number(el.dataset.deadline) - performance.now()) / 1000;
  if (left <= 0) { el.textContent = "expired"; el.classList.add("expired"); return; }
  const s = Math.floor(left);
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  el.textContent = d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : m ? `${m}m ${s % 60}s` : `${left.toFixed(1)}s`;
}

setInterval(() => { document.querySelectorAll(".ttl[data-deadline]").forEach(showTtl); }, 250);

// --- live updates --------------------------------------------------------------------------------------------

function setLive(state, title) {
  const el = document.getElementById("live");
  el.textContent = state;
  el.className = "live " + state;
  el.title = title || "live updates";
}

function follow(params) {
  stopFollowing();
  if (!info || !info.changes || (!params.scope && !info.watch_all)) {
    poll(info && info.changes_reason);
    return;
  }
  const query = new URLSearchParams(params).toString();
  events = new EventSource("/api/events" + (query ? "?" + query : ""));
  events.addEventListener("ready", () => setLive("live", "changes arrive as they commit"));
  events.addEventListener("change", (ev) => { if (view && view.onChange) view.onChange(JSON.parse(ev.data)); });
  events.addEventListener("unavailable", (ev) => { stopFollowing(); poll(JSON.parse(ev.data).message); });
  events.addEventListener("failed", (ev) => setLive("offline", JSON.parse(ev.data).message));
  events.onerror = () => setLive("reconnecting", "the event stream dropped; the browser reconnects");
}

function poll(reason) {
  setLive("polling", "no change feed here" + (reason ? ": " + reason : "") + "; refreshing every 2 s");
  poller = setInterval(() => { if (view && view.refresh) view.refresh(); }, POLL_MS);
}

function stopFollowing() {
  if (events) { events.close(); events = null; }
  if (poller) { clearInterval(poller); poller = null; }
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// At most one call per `ms`, the last one always made: a busy store refreshes the page steadily instead of never.
function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

// --- pages ---------------------------------------------------------------------------------------------------

function scopesPage(params) {
  let search = params.get("search") || "";
  const cursors = [null];   // the `after` of each page seen, for Previous
  let index = 0;
  let next = null;

  const input = h("input", {id: "scope-search", type: "search", placeholder: "search scopes (substring)",
    value: search, autocomplete: "off", "aria-label": "search scopes"});
  const list = h("ul", {id: "scopes", class: "scopes"});
  const prev = h("button", {id: "scopes-prev", type: "button"}, "← Previous");
  const more = h("button", {id: "scopes-next", type: "button"}, "Next →");
  const status = h("p", {id: "scopes-status", class: "muted"});
  main.replaceChildren(h("h1", {id: "title"}, "Scopes"),
    h("form", {class: "search", on: {submit: (e) => { e.preventDefault(); restart(); }}}, input),
    status, list, h("div", {class: "pager"}, prev, more));

  let latest = 0;   // answers can come back out of order: only the last request's is shown
  async function load() {
    let page;
    const mine = ++latest;
    try { page = await api("/api/scopes", {after: cursors[index], search}); }
    catch (e) { if (mine === latest) { list.replaceChildren(); status.replaceChildren(failure(e)); } return; }
    if (mine !== latest) return;
    next = page.next;
    list.replaceChildren(...page.scopes.map((s) =>
      h("li", {dataset: {scope: s}}, h("a", {class: "scope-link", href: scopeHref(s)}, s))));
    status.textContent = page.scopes.length
      ? `page ${index + 1}${search ? `, scopes containing “${search}”` : ""}`
      : (search ? `no scope contains “${search}”` : "the store holds no entries yet");
    prev.disabled = index === 0;
    more.disabled = next === null;
  }
  function restart() {
    search = input.value;
    cursors.length = 1; index = 0;
    history.replaceState(null, "", search ? "#/?search=" + enc(search) : "#/");
    load();
  }
  input.addEventListener("input", debounce(restart, 250));
  prev.addEventListener("click", () => { if (index > 0) { index -= 1; load(); } });
  more.addEventListener("click", () => { if (next !== null) { cursors[index + 1] = next; index += 1; load(); } });
  load();
  follow({});
  return {refresh: load, onChange: throttle(load, 250)};
}

function filterRow(f) {
  const path = h("input", {class: "filter-path", placeholder: "path: status or [\"a\",\"b\"]",
    value: (f && f.path) || "", "aria-label": "filter path"});
  const op = h("select", {class: "filter-op", "aria-label": "filter operation"},
    OPS.map((o) => h("option", {value: o, selected: f && f.op === o}, o)));
  const value = h("input", {class: "filter-value", placeholder: "value: confirmed, 10, \"text\", null",
    value: (f && f.value) || "", "aria-label": "filter value"});
  const row = h("div", {class: "filter-row"}, path, op, value,
    h("button", {type: "button", class: "filter-remove", title: "remove this filter",
      on: {click: () => row.remove()}}, "×"),
    h("span", {class: "field-error filter-error"}));
  return row;
}

function scopePage(scope) {
  const cursors = [null];
  let index = 0, next = null, filters = [];
  const changed = new Set();

  const rows = h("tbody", {id: "entries"});
  const status = h("p", {id: "entries-status", class: "muted"});
  const prev = h("button", {id: "entries-prev", type: "button"}, "← Previous");
  const more = h("button", {id: "entries-next", type: "button"}, "Next →");
  const filterBox = h("div", {id: "filters"});
  const filterError = h("p", {id: "filter-error", class: "field-error"});
  const actions = READ_ONLY ? [] : [
    h("a", {id: "new-entry", class: "button", href: "#/new/" + enc(scope)}, "New entry"),
    h("button", {id: "clear-scope", type: "button", class: "danger", on: {click: clear}}, "Clear scope…"),
  ];
  main.replaceChildren(
    h("p", {class: "crumbs"}, h("a", {href: "#/"}, "Scopes"), " / "),
    h("h1", {id: "title"}, scope),
    h("div", {class: "actions"}, actions),
    h("details", {class: "filters", open: false},
      h("summary", {}, "Filters"),
      filterBox,
      h("div", {class: "filter-actions"},
        h("button", {id: "filter-add", type: "button", on: {click: () => filterBox.append(filterRow())}}, "+ filter"),
        h("button", {id: "filter-apply", type: "button", on: {click: apply}}, "Apply"),
        h("button", {id: "filter-reset", type: "button", on: {click: reset}}, "Reset")),
      filterError),
    status,
    h("table", {class: "entries"},
      h("thead", {}, h("tr", {}, h("th", {class: "key"}, "key"), h("th", {class: "value"}, "value"),
        h("th", {class: "time-left"}, "time left"))),
      rows),
    h("div", {class: "pager"}, prev, more));

  function readFilters() {
    return [...filterBox.querySelectorAll(".filter-row")].map((row) => ({
      path: row.querySelector(".filter-path").value,
      op: row.querySelector(".filter-op").value,
      value: row.querySelector(".filter-value").value,
    })).filter((f) => f.path !== "");
  }
  function apply() { filters = readFilters(); cursors.length = 1; index = 0; load(); }
  function reset() { filterBox.replaceChildren(); apply(); }

  let latest = 0;
  async function load() {
    let page;
    const mine = ++latest;
    filterError.textContent = "";
    filterBox.querySelectorAll(".filter-error").forEach((el) => { el.textContent = ""; });
    try {
      page = await api("/api/entries", {scope, after: cursors[index],
        filters: filters.length ? JSON.stringify(filters) : ""});
    } catch (e) {
      if (mine !== latest) return;
      // Rows of an earlier query must not pass for the answer to this one.
      rows.replaceChildren();
      status.textContent = "";
      prev.disabled = more.disabled = true;
      const m = /^filter-(\d+)$/.exec(e.field || "");
      const row = m && filterBox.querySelectorAll(".filter-row")[Number(m[1])];
      if (row) row.querySelector(".filter-error").textContent = e.message;
      else if (e.field === "filters") filterError.textContent = e.message;
      else status.replaceChildren(failure(e));
      return;
    }
    if (mine !== latest) return;
    next = page.next;
    rows.replaceChildren(...page.entries.map((e) => h("tr", {class: changed.has(e.key) ? "entry changed" : "entry",
      dataset: {key: e.key}},
      h("td", {class: "key"}, h("a", {href: entryHref(scope, e.key)}, e.key)),
      h("td", {class: "value"}, tree(e.value, 1)),
      h("td", {class: "time-left"}, ttlCell(e.ttl)))));
    changed.clear();
    status.textContent = page.entries.length
      ? `page ${index + 1}${filters.length ? `, ${filters.length} filter${filters.length > 1 ? "s" : ""}` : ""}`
      : (filters.length ? "no entry passes the filters" : "this scope holds no live entry");
    prev.disabled = index === 0;
    more.disabled = next === null;
  }
  async function clear() {
    if (!await confirmDialog(`Remove every entry of scope “${scope}”? This cannot be undone.`)) return;
    try {
      const done = await post("/api/clear", {scope, confirm: true});
      flash(`cleared ${done.removed} entr${done.removed === 1 ? "y" : "ies"}`);
      load();
    } catch (e) { flash(e.message, "error"); }
  }
  prev.addEventListener("click", () => { if (index > 0) { index -= 1; load(); } });
  more.addEventListener("click", () => { if (next !== null) { cursors[index + 1] = next; index += 1; load(); } });
  load();
  follow({scope});
  const reload = throttle(load, 250);
  return {refresh: load, onChange: (c) => { changed.add(c.key); reload(); }};
}

function entryPage(scope, key) {
  const body = h("div", {id: "entry"});
  const links = [h("a", {id: "history-link", class: "button", href: historyHref(scope, key)}, "History")];
  if (!READ_ONLY) {
    links.unshift(h("a", {id: "edit-entry", class: "button", href: editHref(scope, key)}, "Edit"));
    links.push(h("button", {id: "delete-entry", type: "button", class: "danger", on: {click: remove}}, "Delete…"));
  }
  main.replaceChildren(
    h("p", {class: "crumbs"}, h("a", {href: "#/"}, "Scopes"), " / ", h("a", {href: scopeHref(scope)}, scope), " / "),
    h("h1", {id: "title"}, key),
    h("div", {class: "actions"}, links),
    body);

  async function load() {
    try {
      const e = await api("/api/entry", {scope, key});
      body.replaceChildren(
        h("p", {}, "time left: ", h("span", {id: "entry-ttl"}, ttlCell(e.ttl)),
          e.expires_at ? h("span", {class: "muted"}, ` (expires ${e.expires_at})`) : null),
        h("div", {id: "entry-value", class: "value"}, tree(e.value, 0)));
    } catch (e) {
      if (e.status === 404) body.replaceChildren(h("p", {id: "entry-missing", class: "muted"}, "no such entry (it was deleted, expired, or never written)"));
      else body.replaceChildren(failure(e));
    }
  }
  async function remove() {
    if (!await confirmDialog(`Delete “${key}” from scope “${scope}”?`)) return;
    try {
      await post("/api/delete", {scope, key, confirm: true});
      flash(`deleted ${key}`);
      location.hash = scopeHref(scope);
    } catch (e) { flash(e.message, "error"); }
  }
  load();
  follow({scope, key});
  return {refresh: load, onChange: throttle(load, 200)};
}

function editPage(scope, key) {
  const creating = key === null;
  const keyInput = creating ? h("input", {id: "edit-key", name: "key", autocomplete: "off", required: true}) : null;
  const value = h("textarea", {id: "edit-value", name: "value", rows: 14, spellcheck: "false"});
  const ttl = h("input", {id: "edit-ttl", name: "ttl", inputmode: "decimal", autocomplete: "off",
    placeholder: creating ? "no expiry" : "keep the current expiry"});
  const errors = {key: h("span", {id: "key-error", class: "field-error"}),
    value: h("span", {id: "value-error", class: "field-error"}),
    ttl: h("span", {id: "ttl-error", class: "field-error"}),
    form: h("p", {id: "form-error", class: "field-error"})};
  const notice = h("p", {id: "edit-notice", class: "notice", hidden: true});
  const save = h("button", {id: "edit-save", type: "submit"}, "Save");
  const form = h("form", {id: "edit-form", class: "edit", on: {submit: submit}},
    creating ? h("label", {}, "key", keyInput, errors.key) : null,
    h("label", {}, "value (JSON)", value, errors.value),
    h("label", {}, "TTL in seconds (empty: " + (creating ? "the store's default" : "keep the expiry") + ")",
      ttl, errors.ttl),
    errors.form,
    h("div", {class: "actions"}, save,
      h("a", {id: "edit-cancel", class: "button", href: creating ? scopeHref(scope) : entryHref(scope, key)}, "Cancel")));
  main.replaceChildren(
    h("p", {class: "crumbs"}, h("a", {href: "#/"}, "Scopes"), " / ", h("a", {href: scopeHref(scope)}, scope),
      creating ? null : [" / ", h("a", {href: entryHref(scope, key)}, key)]),
    h("h1", {id: "title"}, creating ? "New entry in " + scope : "Edit " + key),
    notice, form);

  async function load() {
    if (creating) { value.value = "{}"; return; }
    try {
      const e = await api("/api/entry", {scope, key});
      value.value = JSON.stringify(e.value, null, 2);
    } catch (e) {
      if (e.status !== 404) errors.form.textContent = e.message;
      else value.value = "{}";
    }
  }
  async function submit(event) {
    event.preventDefault();
    Object.values(errors).forEach((el) => { el.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    const k = creating ? keyInput.value : key;
    save.disabled = true;
    try {
      await post("/api/set", {scope, key: k, value: value.value, ttl: ttl.value});
      flash(`saved ${k}`);
      location.hash = entryHref(scope, k);
    } catch (e) {
      const field = errors[e.field] ? e.field : "form";
      errors[field].textContent = e.message;
      const input = {key: keyInput, value, ttl}[field];
      if (input) { input.classList.add("invalid"); input.focus(); }
    } finally { save.disabled = false; }
  }
  load();
  if (creating) { follow({scope}); return {}; }
  follow({scope, key});
  return {
    onChange: (c) => {
      // Never overwrite what the user is typing: say what changed and let them decide.
      notice.hidden = false;
      notice.replaceChildren(`This entry was ${c.event} by another writer (revision ${c.revision}). `,
        h("a", {href: entryHref(scope, key)}, "See the current value"));
    },
  };
}

function changeItem(c) {
  return h("li", {class: "change " + c.event, dataset: {revision: String(c.revision)}},
    h("div", {class: "change-head"},
      h("span", {class: "rev"}, "#" + c.revision), " ",
      h("span", {class: "event"}, c.event), " ",
      h("time", {class: "at", datetime: c.at}, c.at)),
    h("div", {class: "change-values"},
      h("div", {class: "old value"}, h("span", {class: "muted"}, "before "), tree(c.old_value, 1)),
      h("div", {class: "new value"}, h("span", {class: "muted"}, "after "), tree(c.new_value, 1))));
}

function historyPage(scope, key) {
  const list = h("ol", {id: "history", class: "history", reversed: true});
  const status = h("p", {id: "history-status", class: "muted"});
  const more = h("button", {id: "history-more", type: "button", hidden: true}, "Older changes");
  let next = null;
  main.replaceChildren(
    h("p", {class: "crumbs"}, h("a", {href: "#/"}, "Scopes"), " / ", h("a", {href: scopeHref(scope)}, scope),
      " / ", h("a", {href: entryHref(scope, key)}, key), " / "),
    h("h1", {id: "title"}, "History of " + key),
    status, list, more);

  async function load(append) {
    let page;
    try { page = await api("/api/history", {scope, key, before: append ? next : null}); }
    catch (e) { status.replaceChildren(failure(e)); return; }
    next = page.next;
    const items = page.changes.map(changeItem);
    if (append) list.append(...items); else list.replaceChildren(...items);
    status.textContent = list.children.length ? "newest first, as long as the store keeps changes"
      : "no change of this key is kept";
    more.hidden = next === null;
  }
  more.addEventListener("click", () => load(true));
  load(false);
  follow({scope, key});
  return {refresh: () => load(false), onChange: throttle(() => load(false), 200)};
}

function triggersPage() {
  const body = h("div", {id: "triggers-body"});
  main.replaceChildren(h("h1", {id: "title"}, "Triggers"), body);

  async function load() {
    let answer;
    try { answer = await api("/api/triggers"); }
    catch (e) { body.replaceChildren(failure(e)); return; }
    if (!answer.available) {
      body.replaceChildren(h("p", {id: "triggers-unavailable", class: "muted"}, answer.reason || "no triggers here"));
      return;
    }
    if (!answer.triggers.length) {
      body.replaceChildren(h("p", {id: "triggers-none", class: "muted"},
        "no trigger has run on this store yet (@state.on_change, then run_triggers() or motia-state worker)"));
      return;
    }
    body.replaceChildren(h("table", {id: "triggers", class: "triggers"},
      h("thead", {}, h("tr", {}, ["trigger", "position", "behind", "lag", "handled", "skipped", "workers", "parked", ""]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, answer.triggers.map(triggerRows))));
  }
  function triggerRows(t) {
    const retry = READ_ONLY || !t.parked.length ? null : h("button", {type: "button", class: "retry",
      on: {click: async () => {
        try { const r = await post("/api/retry", {name: t.name}); flash(`retrying ${r.retrying} change(s) of ${t.name}`); load(); }
        catch (e) { flash(e.message, "error"); }
      }}}, "Retry parked");
    const rows = [h("tr", {class: "trigger", dataset: {name: t.name}},
      h("td", {class: "name"}, t.name),
      h("td", {class: "position"}, String(t.position)),
      h("td", {class: "lag-changes"}, `${t.lag_changes} change${t.lag_changes === 1 ? "" : "s"}`),
      h("td", {class: "lag-seconds"}, `${t.lag_seconds.toFixed(1)} s`),
      h("td", {class: "handled"}, String(t.handled)),
      h("td", {class: "skipped"}, String(t.skipped)),
      h("td", {class: "workers"}, String(t.workers.length)),
      h("td", {class: "parked-count"}, String(t.parked.length)),
      h("td", {}, retry))];
    if (t.parked.length) {
      rows.push(h("tr", {class: "parked-row"}, h("td", {colspan: 9},
        h("ul", {class: "parked"}, t.parked.map((p) => h("li", {class: "parked-change"},
          h("a", {href: historyHref(p.scope, p.key)}, `#${p.revision} ${p.event} ${p.scope} / ${p.key}`),
          ` — ${p.attempts} attempt${p.attempts === 1 ? "" : "s"}${p.retry_requested ? ", retry requested" : ""}: `,
          h("code", {class: "parked-error"}, p.error)))))));
    }
    return rows;
  }
  load();
  follow({});
  const timer = setInterval(load, POLL_MS);   // progress is not a change of the store: refresh it as well
  return {refresh: load, onChange: throttle(load, 500), close: () => clearInterval(timer)};
}

// --- routing -------------------------------------------------------------------------------------------------

function route() {
  if (view && view.close) view.close();
  stopFollowing();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").slice(1).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  document.querySelectorAll("nav a").forEach((a) => a.classList.remove("current"));
  window.scrollTo(0, 0);
  try {
    if (parts[0] === "scope" && parts.length === 2) view = scopePage(parts[1]);
    else if (parts[0] === "entry" && parts.length === 3) view = entryPage(parts[1], parts[2]);
    else if (parts[0] === "edit" && parts.length === 3 && !READ_ONLY) view = editPage(parts[1], parts[2]);
    else if (parts[0] === "new" && parts.length === 2 && !READ_ONLY) view = editPage(parts[1], null);
    else if (parts[0] === "history" && parts.length === 3) view = historyPage(parts[1], parts[2]);
    else if (parts[0] === "triggers") { view = triggersPage(); document.getElementById("nav-triggers").classList.add("current"); }
    else { view = scopesPage(params); document.getElementById("nav-scopes").classList.add("current"); }
  } catch (e) {
    main.replaceChildren(failure(e));
  }
}

async function start() {
  try {
    info = await api("/api/info");
    document.getElementById("store").textContent = `${info.backend} · ${info.store}`;
  } catch (e) {
    main.replaceChildren(failure(e));
    return;
  }
  document.getElementById("mode").hidden = !READ_ONLY;
  window.addEventListener("hashchange", route);
  route();
}

start();
