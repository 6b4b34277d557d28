// logstream web console: plain JavaScript, no dependencies, served by the broker.
// Views by URL hash: #/ (overview), #/topic/NAME, #/messages, #/groups, #/queues,
// #/queue/NAME (depth, members, dead letters, redrive).
// Live views poll the JSON API every REFRESH_MS; charts keep the last hour in memory.
// With authentication on, an answer of 403 {"login": true} shows the login form; the
// session is an HttpOnly cookie this script never sees.
"use strict";

const REFRESH_MS = 2000;
const HISTORY_MS = 3600 * 1000;
const history = new Map(); // series name -> [[time ms, value], ...]
let previous = null; // the last overview, for rates
let timer = null;
let redrive = null; // {group, count, result}: the redrive dialog of the queue page

class LoginNeeded extends Error {}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, post) {
  const init = { cache: "no-store", credentials: "same-origin" };
  if (post !== undefined) {
    init.method = "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(post);
  }
  const resp = await fetch(path, init);
  const body = await resp.json();
  if (resp.status === 403 && body.login) throw new LoginNeeded(body.error);
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function loginForm(view, message) {
  const error = el("p", { id: "login-error", class: "error" }, message || "");
  const form = el("form", { id: "login" },
    el("label", {}, "API token", el("input", { name: "token", type: "password", autocomplete: "off", placeholder: "ls1.user.secret" })),
    el("button", { type: "submit", id: "login-go" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/api/login", { token: form.elements.token.value });
      await showSession();
      show();
    } catch (err) {
      error.textContent = String(err.message || err);
    }
  });
  view.replaceChildren(el("h2", {}, "Log in"),
    el("p", { class: "muted" }, "The broker requires authentication: an API token from 'logstream user add'."),
    form, error);
}

async function showSession() {
  const who = document.getElementById("who");
  const data = await api("/api/session");
  if (!data.auth || !data.principal) { who.replaceChildren(); return; }
  who.replaceChildren(el("span", { id: "principal" }, data.principal), " ",
    el("button", { type: "button", id: "logout", onclick: async () => {
      await api("/api/logout", {});
      who.replaceChildren();
      show();
    } }, "Log out"));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
}

function seconds(ms) {
  if (ms <= 0) return "-";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function table(columns, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, columns.map(([label, , num]) => el("th", { class: num ? "num" : "" }, label)))),
    el("tbody", {}, rows.map((r) => el("tr", {},
      columns.map(([, get, num]) => el("td", { class: num ? "num" : "" }, get(r)))))));
}

// Long tables show PAGE_ROWS rows at a time: laying out thousands of rows costs the
// browser far more than fetching them (1,000 topics: ~400 ms of layout on a busy 2-core
// machine, against ~20 ms for the JSON). The page shown and the filter survive refreshes.
const PAGE_ROWS = 100;
const paging = new Map(); // table key -> {page, filter}

function paged(key, columns, rows, nameOf) {
  const state = paging.get(key) || { page: 0, filter: "" };
  paging.set(key, state);
  const wanted = state.filter && nameOf ? rows.filter((r) => nameOf(r).includes(state.filter)) : rows;
  const pages = Math.max(1, Math.ceil(wanted.length / PAGE_ROWS));
  state.page = Math.min(state.page, pages - 1);
  const first = state.page * PAGE_ROWS;
  const shownRows = wanted.slice(first, first + PAGE_ROWS);
  const go = (page) => () => { state.page = page; show(); };
  const pager = el("p", { class: "pager", "data-table": key },
    wanted.length > PAGE_ROWS ? [
      el("button", { type: "button", class: "page-prev", onclick: go(state.page - 1), ...(state.page ? {} : { disabled: "" }) }, "\u2190"), " ",
      el("button", { type: "button", class: "page-next", onclick: go(state.page + 1), ...(state.page < pages - 1 ? {} : { disabled: "" }) }, "\u2192"), " ",
    ] : [],
    el("span", { class: "muted" }, wanted.length
      ? `rows ${first + 1}-${first + shownRows.length} of ${wanted.length}` + (wanted.length < rows.length ? ` (filtered from ${rows.length})` : "")
      : "no rows"));
  return [pager, table(columns, shownRows)];
}

function filterBox(key, placeholder) {
  // one input per table key, kept across re-renders so typing and focus survive refreshes
  const id = "filter-" + key;
  const existing = document.getElementById(id);
  if (existing) return existing;
  const box = el("input", { id, type: "search", placeholder, class: "filter" });
  box.value = (paging.get(key) || { filter: "" }).filter;
  box.addEventListener("input", () => {
    const state = paging.get(key) || { page: 0, filter: "" };
    state.filter = box.value.trim();
    state.page = 0;
    paging.set(key, state);
    show();
  });
  return box;
}

function record(name, value) {
  const now = Date.now();
  const points = history.get(name) || [];
  points.push([now, value]);
  while (points.length && points[0][0] < now - HISTORY_MS) points.shift();
  history.set(name, points);
}

function chart(name, width = 320, height = 60) {
  const points = history.get(name) || [];
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("data-series", name);
  if (points.length > 0) {
    const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
    const top = Math.max(1, ...points.map((p) => p[1]));
    const xy = points.map(([t, v]) =>
      `${((t - t0) / (t1 - t0) * (width - 4) + 2).toFixed(1)},${(height - 2 - v / top * (height - 4)).toFixed(1)}`);
    if (xy.length === 1) xy.push(`${width - 2},${xy[0].split(",")[1]}`);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", xy.join(" "));
    svg.append(line);
  }
  return svg;
}

function rate(now, before, topic, field, dt) {
  if (!before || dt <= 0) return 0;
  const old = before.get(topic);
  return old ? Math.max(0, (now[field] - old[field]) / dt) : 0;
}

async function overview(view) {
  const data = await api("/api/overview");
  const at = Date.now();
  const before = previous && new Map(previous.topics.map((t) => [t.name, t]));
  const dt = previous ? (at - previous.at) / 1000 : 0;
  const topics = data.topics.filter((t) => !t.name.startsWith("__")).map((t) => ({
    ...t,
    in_rate: rate(t, before, t.name, "records_in", dt),
    out_rate: rate(t, before, t.name, "records_out", dt),
  }));
  previous = { at, topics: data.topics };
  const totalIn = topics.reduce((s, t) => s + t.in_rate, 0);
  record("produce", totalIn);
  const sorted = topics.sort((a, b) => b.in_rate - a.in_rate || a.name.localeCompare(b.name));
  const who = data.principal ? `, as ${data.principal}` : "";
  if (!document.getElementById("overview-topics")) {
    view.replaceChildren(
      el("h2", {}, "Broker"),
      el("p", { id: "overview-broker" }),
      el("h2", {}, "Records produced per second"),
      el("div", { id: "overview-chart" }),
      el("h2", {}, "Topics"),
      el("p", {}, filterBox("topics", "filter by name")),
      el("div", { id: "overview-topics" }));
  }
  document.getElementById("overview-broker").textContent =
    `gRPC ${data.broker.listen}, data ${data.broker.data_dir}, ${topics.length} topics${who}`;
  document.getElementById("overview-chart").replaceChildren(chart("produce", 640, 80));
  document.getElementById("overview-topics").replaceChildren(...paged("topics", [
    ["topic", (t) => el("a", { href: "#/topic/" + encodeURIComponent(t.name), class: "topic-link" }, t.name)],
    ["partitions", (t) => t.partitions, true],
    ["records", (t) => t.records, true],
    ["size", (t) => bytes(t.size_bytes), true],
    ["in/s", (t) => t.in_rate.toFixed(1), true],
    ["out/s", (t) => t.out_rate.toFixed(1), true],
  ], sorted, (t) => t.name));
}

async function topic(view, name) {
  const t = await api("/api/topic?name=" + encodeURIComponent(name));
  view.replaceChildren(
    el("h2", {}, `Topic ${t.name}`),
    el("p", {}, el("a", { href: `#/messages?topic=${encodeURIComponent(t.name)}` }, "Browse messages")),
    table([
      ["partition", (p) => p.partition, true],
      ["start offset", (p) => p.log_start_offset, true],
      ["end offset", (p) => p.log_end_offset, true],
      ["size", (p) => bytes(p.size_bytes), true],
      ["segments", (p) => p.segments, true],
      ["records in", (p) => p.records_in, true],
      ["records out", (p) => p.records_out, true],
      ["error", (p) => p.error],
    ], t.partitions),
    el("h2", {}, "Config"),
    table([["key", (r) => r[0]], ["value", (r) => r[1]]], Object.entries(t.config).sort()));
}

function shown(v) {
  if (v === null) return el("span", { class: "muted" }, "null");
  if (v.hex !== undefined) return el("span", { class: "muted" }, "hex " + v.hex);
  try {
    const parsed = JSON.parse(v.text);
    if (parsed !== null && typeof parsed === "object") return JSON.stringify(parsed, null, 2);
  } catch (e) { /* not JSON: shown as text */ }
  return v.text;
}

function timeMs(text) {
  // a time the browser can parse (ISO 8601; without a zone it is local time) or epoch ms
  const t = /^\d+$/.test(text.trim()) ? Number(text) : Date.parse(text);
  if (Number.isNaN(t)) throw new Error(`not a time: ${text}`);
  return t;
}

async function messages(view, params) {
  const overviewData = await api("/api/overview");
  const names = overviewData.topics.map((t) => t.name).filter((n) => !n.startsWith("__"));
  const form = el("form", { id: "browse" },
    el("label", {}, "topic", el("select", { name: "topic" }, names.map((n) => el("option", { value: n }, n)))),
    el("label", {}, "partition", el("input", { name: "partition", type: "number", min: "0", value: "0" })),
    el("label", {}, "offset", el("input", { name: "offset", type: "number", min: "0", placeholder: "end" })),
    el("label", {}, "order", el("select", { name: "order" },
      el("option", { value: "newest" }, "newest first"), el("option", { value: "oldest" }, "oldest first"))),
    el("label", {}, "key", el("input", { name: "key" })),
    el("label", {}, "text", el("input", { name: "text" })),
    el("label", {}, "header", el("input", { name: "header", placeholder: "name=value" })),
    el("label", {}, "from", el("input", { name: "from", placeholder: "2026-12-06T10:00:00Z or ms" })),
    el("label", {}, "to", el("input", { name: "to", placeholder: "time or ms" })),
    el("label", {}, "limit", el("input", { name: "limit", type: "number", min: "1", max: "500", value: "50" })),
    el("button", { type: "submit", id: "browse-go" }, "Show"));
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  const results = el("div", { id: "results" });
  const run = async (event) => {
    if (event) event.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (v === "") continue;
      if (k === "from" || k === "to") q.set(k + "_ms", String(timeMs(v)));
      else q.set(k, v);
    }
    const page = await api("/api/messages?" + q.toString());
    const next = page.next_offset === null ? null : el("button", {
      id: "browse-next", type: "button",
      onclick: () => { form.elements.offset.value = page.next_offset; run(); },
    }, "Next page");
    results.replaceChildren(
      el("p", { class: "muted" }, `offsets ${page.log_start_offset} to ${page.log_end_offset}`
        + (page.window[0] !== page.log_start_offset || page.window[1] !== page.log_end_offset
          ? `, time window offsets ${page.window[0]} to ${page.window[1]}` : "")
        + `, ${page.records.length} shown`),
      table([
        ["offset", (r) => r.offset, true],
        ["time", (r) => new Date(r.timestamp_ms).toISOString()],
        ["key", (r) => shown(r.key)],
        ["value", (r) => el("div", { class: "value" }, shown(r.value))],
        ["headers", (r) => r.headers.map(([k, v]) => `${k}=${v && v.text !== undefined ? v.text : "(binary)"}`).join(", ")],
      ], page.records),
      ...(next ? [next] : [])); // replaceChildren would show a null as the text "null"
  };
  form.addEventListener("submit", run);
  view.replaceChildren(el("h2", {}, "Messages"), form, results);
  if (names.length) await run();
}

async function groups(view) {
  const data = await api("/api/groups");
  const parts = [el("h2", {}, "Consumer groups")];
  if (!data.groups.length) parts.push(el("p", { class: "muted" }, "No consumer groups."));
  for (const g of data.groups) {
    record("lag:" + g.group, g.lag);
    parts.push(
      el("h2", {}, `${g.group} (${g.state}, ${g.members.length} members, lag ${g.lag})`),
      chart("lag:" + g.group),
      ...paged("group:" + g.group, [
        ["topic", (p) => p.topic],
        ["partition", (p) => p.partition, true],
        ["member", (p) => p.member_id || "-"],
        ["committed", (p) => p.committed, true],
        ["end", (p) => p.end, true],
        ["lag", (p) => p.lag, true],
        ["time lag", (p) => seconds(p.time_lag_ms), true],
      ], g.partitions));
  }
  view.replaceChildren(...parts);
}

async function queues(view) {
  const data = await api("/api/queues");
  const parts = [el("h2", {}, "Queue groups")];
  if (!data.queues.length) parts.push(el("p", { class: "muted" }, "No queue groups."));
  for (const q of data.queues) record("depth:" + q.group, q.depth);
  if (data.queues.length) {
    parts.push(table([
      ["group", (q) => el("a", { href: "#/queue/" + encodeURIComponent(q.group), class: "queue-link" }, q.group)],
      ["depth", (q) => q.depth, true],
      ["available", (q) => q.available, true],
      ["in flight", (q) => q.in_flight, true],
      ["delayed", (q) => q.delayed, true],
      ["dead-lettered", (q) => q.dead_lettered, true],
      ["oldest", (q) => seconds(q.oldest_age_ms), true],
      ["depth, last hour", (q) => chart("depth:" + q.group, 200, 40)],
    ], data.queues));
  }
  view.replaceChildren(...parts);
}

function redrivePanel(name, refresh) {
  if (!redrive || redrive.group !== name) return null;
  if (redrive.result !== undefined) {
    return el("p", { id: "redrive-result" }, `Redriven ${redrive.result} dead letters.`);
  }
  if (redrive.count === 0) return el("p", { id: "redrive-count" }, "Nothing to redrive.");
  return el("div", { id: "redrive-confirm" },
    el("p", { id: "redrive-count" },
      `${redrive.count} dead letters would go back to their source topics. Redrive them?`),
    el("button", { type: "button", id: "redrive-execute", onclick: async () => {
      const done = await api("/api/redrive", { group: name, execute: true });
      redrive = { group: name, result: done.count };
      await refresh();
    } }, "Confirm redrive"), " ",
    el("button", { type: "button", id: "redrive-cancel", onclick: () => { redrive = null; refresh(); } }, "Cancel"));
}

async function queue(view, name) {
  const q = await api("/api/queue?group=" + encodeURIComponent(name));
  const refresh = () => queue(view, name);
  record("depth:" + name, q.total.depth);
  const t = q.total;
  const dryRun = async () => {
    const plan = await api("/api/redrive", { group: name, execute: false });
    redrive = { group: name, count: plan.count };
    await refresh();
  };
  view.replaceChildren(
    el("h2", {}, `Queue group ${q.group}`),
    el("p", { id: "queue-totals" },
      `depth ${t.depth}, in flight ${t.in_flight}, delayed ${t.delayed}, available ${t.available}, `
      + `acknowledged ${t.acknowledged}, dead-lettered ${t.dead_lettered}, redelivered ${t.redelivered}`),
    chart("depth:" + name, 640, 80),
    table([
      ["topic", (p) => p.topic],
      ["partition", (p) => p.partition, true],
      ["depth", (p) => p.depth, true],
      ["available", (p) => p.available, true],
      ["in flight", (p) => p.in_flight, true],
      ["delayed", (p) => p.delayed, true],
      ["dead-lettered", (p) => p.dead_lettered, true],
    ], q.partitions),
    el("h2", {}, "Members"),
    q.members.length
      ? table([["member", (m) => m.member_id], ["client", (m) => m.client_id], ["held", (m) => m.held, true]], q.members)
      : el("p", { class: "muted" }, "No members."),
    el("h2", {}, `Dead letters (${q.dead_letter_topic}, ${q.dead_letters_waiting} not redriven)`),
    el("p", {}, el("button", { type: "button", id: "redrive", onclick: dryRun }, "Redrive\u2026")),
    el("div", { id: "redrive-panel" }, redrivePanel(name, refresh)),
    el("div", { id: "dead-letters" },
      q.dead_letters.length ? table([
        ["dlq offset", (d) => d.offset, true],
        ["reason", (d) => d.reason + (d.reason_text ? ": " + d.reason_text : "")],
        ["deliveries", (d) => d.delivery_count, true],
        ["source", (d) => `${d.source_topic}/${d.source_partition}@${d.source_offset}`],
        ["key", (d) => shown(d.key)],
        ["value", (d) => el("div", { class: "value" }, shown(d.value))],
        ["redriven", (d) => (d.redriven ? "yes" : "no")],
      ], q.dead_letters) : el("p", { class: "muted" }, "No dead letters.")));
}

async function show() {
  clearTimeout(timer);
  const view = document.getElementById("view");
  const status = document.getElementById("status");
  const [route, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  let live = true;
  let render;
  if (route.startsWith("/topic/")) render = () => topic(view, decodeURIComponent(route.slice(7)));
  else if (route === "/messages") { render = () => messages(view, params); live = false; }
  else if (route === "/groups") render = () => groups(view);
  else if (route === "/queues") render = () => queues(view);
  else if (route.startsWith("/queue/")) render = () => queue(view, decodeURIComponent(route.slice(7)));
  else render = () => overview(view);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === "#" + route);
  }
  try {
    await render();
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (err) {
    if (err instanceof LoginNeeded) {
      loginForm(view, "");
      status.textContent = err.message;
      status.className = "";
      return;
    }
    status.textContent = String(err.message || err);
    status.className = "error";
  }
  if (live) timer = setTimeout(show, REFRESH_MS);
}

// a failed click or form (a bad time, a refused redrive) shows its error in the header
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const status = document.getElementById("status");
  if (event.reason instanceof LoginNeeded) { clearTimeout(timer); loginForm(document.getElementById("view"), ""); }
  status.textContent = String((event.reason && event.reason.message) || event.reason);
  status.className = "error";
});
window.addEventListener("hashchange", () => { redrive = null; show(); });
showSession().catch(() => {}); // beside the first view, not before it: one round trip less
show();
