// The read-only page: everything comes from /api/v1 with the same access rules as any client.
// What is shown (search, filters, sort, the open task and execution) lives in the URL
// (docs/page.md, "Addressable").
"use strict";

const FILTERS = { q: "q", status: "last_status", owner: "owner", type: "type", enabled: "enabled", label: "label" };
const state = { q: "", status: "", owner: "", type: "", enabled: "", label: "", sort: "name", task: null, execution: null, tasksCursor: null, execCursor: null };
const TOKEN_KEY = "reconciler.token";
let pendingLogin = null;
let shownTask = null; // the task whose page is loaded
let taskZone = "UTC";

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function badge(status) {
  return status ? el("span", { class: `badge status-${status}` }, status) : el("span", { class: "muted" }, "never run");
}

// A task's health: failures in a row (red), else when it last succeeded (docs/tracking.md).
function health(task) {
  const since = task.last_success_at ? `last success ${when(task.last_success_at)}` : "no success yet";
  if (task.consecutive_failures > 0) {
    return el("span", { class: "failing", title: since }, `${task.consecutive_failures} failed in a row`);
  }
  return task.last_success_at ? moment(task.last_success_at, task.timezone) : el("span", { class: "muted" }, "");
}

// An instant in UTC, as text (kept for the page's other scripts).
function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

// "in 3 min", "2 h ago": how far an instant is from now.
function relative(iso, now = Date.now()) {
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const size = Math.abs(seconds);
  let text;
  if (size < 45) text = `${size} s`;
  else if (size < 45 * 60) text = `${Math.round(size / 60)} min`;
  else if (size < 36 * 3600) text = `${Math.round(size / 3600)} h`;
  else text = `${Math.round(size / 86400)} d`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

const formats = new Map();
function format(zone) {
  if (!formats.has(zone)) {
    let options = { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "longOffset" };
    try {
      formats.set(zone, new Intl.DateTimeFormat("en-CA", options));
    } catch {
      options = { ...options, timeZone: "UTC" };
      formats.set(zone, new Intl.DateTimeFormat("en-CA", options));
    }
  }
  return formats.get(zone);
}

// An instant in a time zone with its offset: "2025-01-01 13:00:03 +01:00".
function local(iso, zone = "UTC") {
  const parts = Object.fromEntries(format(zone || "UTC").formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  const offset = (parts.timeZoneName || "GMT").replace("GMT", "") || "+00:00";
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${offset}`;
}

// A <time>: the task's zone with the offset and the relative form; UTC on hover.
function moment(iso, zone) {
  if (!iso) return el("span", { class: "muted" }, "");
  return el("time", { dateTime: iso, title: when(iso), class: "moment" }, local(iso, zone), " ", el("span", { class: "relative" }, `(${relative(iso)})`));
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Ask for the token once, when the API first answers 401; keep it for the session.
function askToken(message) {
  if (!pendingLogin) {
    pendingLogin = new Promise((resolve) => {
      const form = $("#login");
      $("#login-error").textContent = message || "";
      form.hidden = false;
      $("#token").focus();
      form.onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
        form.hidden = true;
        pendingLogin = null;
        resolve();
      };
    });
  }
  return pendingLogin;
}

async function api(path) {
  for (;;) {
    const response = await fetch(path, { headers: headers() });
    if (response.status === 401) {
      const hadToken = Boolean(sessionStorage.getItem(TOKEN_KEY));
      sessionStorage.removeItem(TOKEN_KEY);
      await askToken(hadToken ? "That token was not accepted." : "");
      continue;
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || body.detail || response.statusText);
    return body;
  }
}

// --- the URL ------------------------------------------------------------------------------

function readLocation() {
  const params = new URLSearchParams(location.search);
  for (const key of Object.keys(FILTERS)) state[key] = params.get(key) || "";
  state.sort = params.get("sort") || "name";
  state.task = params.get("task") || null;
  state.execution = state.task && params.get("execution") ? params.get("execution") : null;
}

function locationFor() {
  const params = new URLSearchParams();
  for (const key of Object.keys(FILTERS)) if (state[key]) params.set(key, state[key]);
  if (state.sort !== "name") params.set("sort", state.sort);
  if (state.task) params.set("task", state.task);
  if (state.task && state.execution) params.set("execution", state.execution);
  const query = params.toString();
  return `${location.pathname}${query ? `?${query}` : ""}`;
}

// Record the state as a new history entry (back returns to the previous one).
function remember() {
  const target = locationFor();
  if (target !== `${location.pathname}${location.search}`) history.pushState(null, "", target);
}

function taskHref(name, execution = null) {
  const saved = { task: state.task, execution: state.execution };
  state.task = name;
  state.execution = execution;
  const href = locationFor();
  Object.assign(state, saved);
  return href;
}

function showFilters() {
  $("#search").value = state.q;
  $("#filter-status").value = state.status;
  $("#filter-owner").value = state.owner;
  $("#filter-type").value = state.type;
  $("#filter-enabled").value = state.enabled;
  $("#filter-label").value = state.label;
}

// --- the task list ------------------------------------------------------------------------

function tasksQuery(extra = {}) {
  const params = new URLSearchParams({ sort: state.sort, limit: "100", ...extra });
  for (const [key, name] of Object.entries(FILTERS)) if (state[key]) params.set(name, state[key]);
  return params;
}

function cell(label, ...children) {
  return el("td", { "data-label": label }, ...children);
}

function taskRow(task) {
  const link = el("a", { href: taskHref(task.name), class: "task-link" }, task.name);
  link.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    openTask(task.name);
  });
  const notes = [];
  if (!task.enabled) notes.push(el("span", { class: "tag tag-disabled" }, "disabled"));
  if (!task.in_window) notes.push(el("span", { class: "tag tag-window", title: windowText(task.active) }, "outside its active window"));
  const classes = [task.enabled ? "" : "disabled", task.in_window ? "" : "out-of-window", task.name === state.task ? "selected" : ""];
  const row = el("tr", { "data-task": task.name, class: classes.filter(Boolean).join(" ") },
    el("td", { "data-label": "Name", class: "name" }, el("strong", {}, link), ...notes, el("div", { class: "muted" }, task.description)),
    cell("Owner", task.owner), cell("Type", task.type), cell("Schedule", el("code", {}, task.schedule || "")),
    cell("Enabled", task.enabled ? "yes" : "no"), cell("Last status", badge(task.last_status)),
    el("td", { class: "health", "data-label": "Health" }, health(task)),
    cell("Last run", moment(task.last_run, task.timezone)), cell("Next run", moment(task.next_run, task.timezone)));
  row.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    openTask(task.name);
  });
  return row;
}

function windowText(active) {
  if (!active) return "";
  return ["active", active.from ? `from ${active.from}` : "", active.until ? `until ${active.until}` : ""].filter(Boolean).join(" ");
}

// The first page, or (refresh) as many rows as are shown, in place.
async function loadTasks(append = false, refresh = false) {
  const shown = $("#tasks tbody").children.length;
  const params = tasksQuery(refresh ? { limit: String(Math.min(500, Math.max(100, shown))) } : {});
  if (append && state.tasksCursor) params.set("cursor", state.tasksCursor);
  const csv = tasksQuery({ format: "csv" });
  csv.delete("limit");
  csv.delete("sort");
  $("#tasks-csv").href = `/api/v1/tasks/?${csv}`;
  let page;
  try {
    page = await api(`/api/v1/tasks/?${params}`);
  } catch (error) {
    $("#status-line").textContent = error.message;
    return;
  }
  const body = $("#tasks tbody");
  const rows = page.items.map(taskRow);
  if (append) body.append(...rows);
  else body.replaceChildren(...rows);
  if (!body.children.length) body.append(el("tr", { class: "empty" }, el("td", { colSpan: 9, class: "muted" }, "No task matches.")));
  state.tasksCursor = page.next_cursor;
  $("#tasks-more").hidden = !page.next_cursor;
  const count = body.querySelectorAll("tr[data-task]").length;
  $("#status-line").textContent = `${count} task(s)${page.next_cursor ? " shown" : ""}`;
  for (const th of document.querySelectorAll("#tasks th[data-sort]")) {
    const key = th.dataset.sort;
    const ascending = state.sort === key;
    const descending = state.sort === `-${key}`;
    th.classList.toggle("sorted-asc", ascending);
    th.classList.toggle("sorted-desc", descending);
    th.setAttribute("aria-sort", ascending ? "ascending" : descending ? "descending" : "none");
  }
}

// --- the header ---------------------------------------------------------------------------

async function loadOverview() {
  let view;
  try {
    view = await api("/api/v1/overview");
  } catch (error) {
    $("#overview-sync").textContent = error.message;
    return;
  }
  const sync = view.sync;
  const syncText = { in_sync: "in sync", out_of_sync: "OUT OF SYNC", never_applied: "never applied" }[sync.state];
  $("#overview-sync").replaceChildren(el("span", { class: `sync sync-${sync.state}`, title: sync.line }, syncText));
  const apply = $("#overview-apply");
  if (sync.last_attempt_at) {
    const commitText = sync.git_commit ? sync.git_commit.slice(0, 7) : "no commit";
    const commit = view.repository_url && sync.git_commit
      ? el("a", { href: `${view.repository_url}/commit/${sync.git_commit}` }, commitText)
      : el("code", {}, commitText);
    apply.replaceChildren(commit, " ", moment(sync.last_attempt_at, "UTC"), " ",
      el("span", { class: `outcome outcome-${sync.outcome}` }, sync.outcome));
  } else {
    apply.replaceChildren(el("span", { class: "muted" }, "none yet"));
  }
  $("#overview-beats").replaceChildren(el("span", { class: view.beats_alive ? "" : "failing" }, `${view.beats_alive} of ${view.beats}`));
  $("#overview-workers").replaceChildren(el("span", { title: view.workers_seen.join(", ") || "none in the last 10 minutes" }, String(view.workers_seen.length)));
  const counts = [];
  for (const status of ["failure", "retry", "started", "pending", "success", "revoked", "never"]) {
    const count = view.by_last_status[status];
    if (!count) continue;
    const button = el("button", { type: "button", class: `count count-${status}`, "data-status": status, "aria-pressed": String(state.status === status) },
      `${status === "never" ? "never run" : status} ${count}`);
    button.addEventListener("click", () => setFilter("status", state.status === status ? "" : status));
    counts.push(button);
  }
  counts.push(el("span", { class: "muted" }, ` of ${view.tasks} (${view.disabled} disabled)`));
  $("#overview-counts").replaceChildren(...counts);
}

// --- a task's page ------------------------------------------------------------------------

function executionDetail(execution) {
  const detail = el("td", { colSpan: 8 });
  if (execution.result !== null && execution.result !== undefined) {
    detail.append(el("div", { class: "muted" }, "result"), el("pre", { class: "result" }, JSON.stringify(execution.result, null, 2)));
  }
  if (execution.error) detail.append(el("div", { class: "error" }, execution.error));
  if (execution.traceback) detail.append(el("pre", { class: "traceback" }, execution.traceback));
  detail.append(el("div", { class: "muted" }, `args ${JSON.stringify(execution.args)} kwargs ${JSON.stringify(execution.kwargs)} · celery id ${execution.celery_task_id}`));
  return el("tr", { class: "exec-detail", "data-detail": String(execution.id) }, detail);
}

function toggleExecution(row, execution, open) {
  const next = row.nextElementSibling;
  const isOpen = Boolean(next && next.classList.contains("exec-detail"));
  if (open === isOpen) return;
  if (isOpen) next.remove();
  else row.after(executionDetail(execution));
  row.setAttribute("aria-expanded", String(!isOpen));
}

function executionRow(execution, zone) {
  const id = String(execution.id);
  const link = el("a", { href: taskHref(state.task, id) }, id);
  const row = el("tr", { class: "exec-row", "data-execution": id, "aria-expanded": "false" },
    cell("#", link), cell("Status", badge(execution.status)), cell("Trigger", execution.trigger),
    cell("Queued", moment(execution.queued_at, zone)), cell("Started", moment(execution.started_at, zone)),
    cell("Duration", execution.duration_ms === null ? "" : `${execution.duration_ms} ms`),
    cell("Worker", execution.worker || ""), cell("Retries", String(execution.retries)));
  const toggle = (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    const opening = row.getAttribute("aria-expanded") !== "true";
    toggleExecution(row, execution, opening);
    state.execution = opening ? id : null;
    remember();
  };
  link.addEventListener("click", (event) => { event.stopPropagation(); toggle(event); });
  row.addEventListener("click", toggle);
  return row;
}

// The first page (or, refresh, as many rows as shown) with the open details kept open.
async function loadExecutions(append = false, refresh = false) {
  const name = state.task;
  const body = $("#executions tbody");
  const shown = body.querySelectorAll("tr.exec-row").length;
  const expanded = new Set([...body.querySelectorAll("tr.exec-detail")].map((row) => row.dataset.detail));
  if (state.execution) expanded.add(state.execution);
  const params = new URLSearchParams({ limit: refresh ? String(Math.min(500, Math.max(50, shown))) : "50" });
  if (append && state.execCursor) params.set("cursor", state.execCursor);
  const page = await api(`/api/v1/tasks/${encodeURIComponent(name)}/executions?${params}`);
  if (name !== state.task) return;
  const rows = [];
  for (const execution of page.items) {
    const row = executionRow(execution, taskZone);
    rows.push(row);
    if (expanded.has(String(execution.id))) {
      row.setAttribute("aria-expanded", "true");
      rows.push(executionDetail(execution));
    }
  }
  if (append) body.append(...rows);
  else body.replaceChildren(...rows);
  if (!body.children.length) body.append(el("tr", {}, el("td", { colSpan: 8, class: "muted" }, "No executions yet.")));
  state.execCursor = page.next_cursor;
  $("#executions-more").hidden = !page.next_cursor;
  if (!append && !refresh && state.execution) await showLinkedExecution();
}

// An execution named in the URL but not on the first page: fetched and shown on top.
async function showLinkedExecution() {
  const id = state.execution;
  const body = $("#executions tbody");
  let row = body.querySelector(`tr.exec-row[data-execution="${CSS.escape(id)}"]`);
  if (!row) {
    let execution;
    try {
      execution = await api(`/api/v1/tasks/executions/${encodeURIComponent(id)}`);
    } catch {
      return;
    }
    if (execution.task !== state.task) return;
    row = executionRow(execution, taskZone);
    row.classList.add("linked");
    row.setAttribute("aria-expanded", "true");
    body.prepend(row, executionDetail(execution));
  }
  row.scrollIntoView({ block: "nearest" });
}

function definitionItem(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function json(value) {
  return el("code", { class: "json" }, JSON.stringify(value));
}

function showDefinition(task) {
  const labels = Object.entries(task.labels || {});
  const options = Object.entries(task.options || {}).filter(([, value]) => value !== null && value !== undefined);
  const window = task.active ? `${windowText(task.active)} (${task.timezone})${task.in_window ? "" : " · outside it now"}` : "always";
  const items = [
    ...definitionItem("Celery task", el("code", {}, task.task)),
    ...definitionItem("Owner", task.owner),
    ...definitionItem("Type", task.type),
    ...definitionItem("Schedule", task.schedule || ""),
    ...definitionItem("Time zone", task.timezone || "UTC"),
    ...definitionItem("Enabled", task.enabled ? "yes" : el("span", { class: "tag tag-disabled" }, "no (disabled)")),
    ...definitionItem("Active", task.in_window ? window : el("span", { class: "tag tag-window" }, window)),
    ...definitionItem("Args", json(task.args)),
    ...definitionItem("Kwargs", json(task.kwargs)),
    ...definitionItem("Options", options.length ? json(Object.fromEntries(options)) : el("span", { class: "muted" }, "none")),
    ...definitionItem("Labels", ...(labels.length ? labels.map(([key, value]) => el("span", { class: "label-chip" }, `${key}=${value}`)) : [el("span", { class: "muted" }, "none")])),
    ...definitionItem("Overlap", task.overlap),
    ...definitionItem("Catch-up", task.catchup),
  ];
  if (task.definition && task.definition.spread) items.push(...definitionItem("Spread", `${task.definition.spread} (this task: +${task.spread_offset})`));
  $("#task-definition").replaceChildren(...items);
  const source = task.source;
  const where = `${source.path}:${source.line}`;
  const parts = [source.url ? el("a", { href: source.url }, where) : el("code", {}, where)];
  if (source.commit) {
    const short = source.commit.slice(0, 7);
    parts.push(" at ", source.commit_url ? el("a", { href: source.commit_url, class: "commit" }, short) : el("code", {}, short));
  }
  parts.push(" · updated ", moment(task.updated_at, task.timezone));
  if (task.deleted_at) parts.push(" · deleted ", moment(task.deleted_at, task.timezone));
  $("#task-source").replaceChildren("from ", ...parts);
  const next = task.next_fires.map((iso) => el("li", {}, moment(iso, task.timezone)));
  if (!next.length) {
    const why = task.deleted_at ? "deleted" : !task.enabled ? "disabled" : task.type === "async" ? "runs when applied" : "nothing left to fire";
    next.push(el("li", { class: "muted" }, `none (${why})`));
  }
  $("#task-next").replaceChildren(...next);
}

async function openTask(name, { push = true } = {}) {
  const changed = name !== state.task;
  state.task = name;
  if (changed) state.execution = null;
  if (push) remember();
  await showTask();
}

async function showTask() {
  const name = state.task;
  for (const row of document.querySelectorAll("#tasks tbody tr[data-task]")) row.classList.toggle("selected", row.dataset.task === name);
  const section = $("#execution-section");
  if (!name) {
    if (!section.hidden) {
      section.hidden = true;
      announce("task-closed", { name: shownTask });
    }
    shownTask = null;
    return;
  }
  if (shownTask === name && !section.hidden) {
    for (const detail of document.querySelectorAll("#executions tr.exec-detail")) detail.remove();
    await loadExecutions();
    return;
  }
  shownTask = name;
  state.execCursor = null;
  $("#execution-task").textContent = name;
  $("#executions-csv").href = `/api/v1/tasks/${encodeURIComponent(name)}/executions?format=csv`;
  $("#executions tbody").replaceChildren();
  section.hidden = false;
  announce("task-opened", { name });
  let task;
  try {
    task = await api(`/api/v1/tasks/${encodeURIComponent(name)}`);
  } catch (error) {
    $("#task-description").textContent = error.message;
    $("#task-definition").replaceChildren();
    return;
  }
  if (name !== state.task) return;
  taskZone = task.timezone || "UTC";
  document.title = `${name} · celery-reconciler`;
  $("#task-description").textContent = task.description;
  showDefinition(task);
  $("#task-health").textContent = [
    `last success ${task.last_success_at ? `${local(task.last_success_at, taskZone)} (${relative(task.last_success_at)})` : "never"}`,
    `last failure ${task.last_failure_at ? `${local(task.last_failure_at, taskZone)} (${relative(task.last_failure_at)})` : "never"}`,
    `${task.consecutive_failures} failure(s) in a row`,
  ].join(" · ");
  $("#task-health").classList.toggle("failing", task.consecutive_failures > 0);
  const stats = await api(`/api/v1/tasks/${encodeURIComponent(name)}/stats?days=7`);
  const day = stats.days[stats.days.length - 1];
  $("#task-stats").textContent = `last 7 days: ${stats.successes} succeeded, ${stats.failures} failed, ${stats.revoked} revoked` +
    (day && day.duration_p50_ms !== null ? ` · ${day.day}: p50 ${Math.round(day.duration_p50_ms)} ms, p95 ${Math.round(day.duration_p95_ms)} ms, max ${day.duration_max_ms} ms` : "");
  await loadExecutions();
  if (!state.execution) section.scrollIntoView({ block: "start" });
}

// --- the apply log ------------------------------------------------------------------------

function commit(apply) {
  return apply.git_commit ? apply.git_commit.slice(0, 7) : "";
}

function outcome(apply) {
  const text = apply.outcome === "invalid" ? `invalid: ${apply.error_count} error${apply.error_count === 1 ? "" : "s"}` : apply.outcome;
  const repeated = apply.attempts > 1 ? ` (${apply.attempts} attempts, last ${when(apply.last_attempt_at)})` : "";
  return el("span", { class: `outcome outcome-${apply.outcome}` }, text + repeated);
}

// The banner when the latest attempt did not apply: the schedule is not what the files say.
async function showSync(items) {
  const banner = $("#sync-banner");
  const latest = items[0];
  if (!latest || latest.outcome === "applied") {
    banner.hidden = true;
    return;
  }
  let since = latest.applied_at;
  for (const item of items) {
    if (item.outcome === "applied") break;
    since = item.applied_at;
  }
  const applied = (await api("/api/v1/applies?outcome=applied&limit=1")).items[0];
  const what = latest.outcome === "invalid"
    ? `${latest.error_count} error${latest.error_count === 1 ? "" : "s"}`
    : `apply ${latest.outcome}`;
  const at = latest.git_commit ? ` at ${commit(latest)}` : "";
  const last = applied ? `last applied ${commit(applied) || when(applied.applied_at)}` : "never applied";
  $("#sync-line").textContent = `OUT OF SYNC: ${what}${at} since ${when(since)}; ${last}`;
  $("#sync-errors").replaceChildren(...latest.errors.slice(0, 5).map((error) => el("li", {}, error)));
  banner.hidden = false;
}

async function loadApplies() {
  const page = await api("/api/v1/applies?limit=20");
  await showSync(page.items);
  const body = $("#applies tbody");
  const rows = [];
  for (const apply of page.items) {
    const names = (list) => (list.length ? ` (${list.join(", ")})` : "");
    rows.push(el("tr", { "data-outcome": apply.outcome },
      cell("Attempted", moment(apply.applied_at, "UTC")), cell("Outcome", outcome(apply)),
      cell("Created", `${apply.created}${names(apply.created_names)}`),
      cell("Updated", `${apply.updated}${names(apply.updated_names)}`), cell("Deleted", `${apply.deleted}${names(apply.deleted_names)}`),
      cell("Unchanged", String(apply.unchanged)), el("td", { title: apply.git_commit || "", "data-label": "Commit" }, `${commit(apply)}${apply.git_dirty ? " (dirty)" : ""}`)));
  }
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No applies recorded.")));
  body.replaceChildren(...rows);
}

// CSV links carry the token too: fetch with the header, then save the response.
async function downloadCsv(event) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  event.preventDefault();
  const link = event.currentTarget;
  const response = await fetch(link.href, { headers: headers() });
  const url = URL.createObjectURL(await response.blob());
  const save = el("a", { href: url, download: link.href.includes("/executions") ? "executions.csv" : "tasks.csv" });
  document.body.append(save);
  save.click();
  save.remove();
  URL.revokeObjectURL(url);
}

// The page's other scripts (live.js, charts.js) follow it through these events.
function announce(name, detail = {}) {
  document.dispatchEvent(new CustomEvent(`reconciler:${name}`, { detail }));
}

function setFilter(key, value) {
  if (state[key] === value) return;
  state[key] = value;
  remember();
  showFilters();
  loadTasks();
  loadOverview();
}

// Something changed in the store (live.js): refresh what is shown, in place.
async function refresh(topics) {
  const scroll = window.scrollY;
  const work = [];
  if (topics.includes("tasks") || topics.includes("executions")) work.push(loadTasks(false, true), loadOverview());
  if (topics.includes("executions") && state.task && shownTask === state.task) work.push(loadExecutions(false, true));
  if (topics.includes("applies")) work.push(loadApplies(), loadOverview());
  await Promise.allSettled(work);
  window.scrollTo({ top: scroll });
}

function init() {
  readLocation();
  showFilters();
  let timer = null;
  $("#search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => setFilter("q", event.target.value.trim()), 250);
  });
  $("#filters").addEventListener("submit", (event) => event.preventDefault());
  for (const [id, key] of [["#filter-status", "status"], ["#filter-type", "type"], ["#filter-enabled", "enabled"]]) {
    $(id).addEventListener("change", (event) => setFilter(key, event.target.value));
  }
  for (const [id, key] of [["#filter-owner", "owner"], ["#filter-label", "label"]]) {
    $(id).addEventListener("change", (event) => setFilter(key, event.target.value.trim()));
  }
  $("#filters-clear").addEventListener("click", () => {
    for (const key of Object.keys(FILTERS)) state[key] = "";
    remember();
    showFilters();
    loadTasks();
    loadOverview();
  });
  for (const th of document.querySelectorAll("#tasks th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.sort;
      if (key === "next_run") state.sort = "next_run";
      else state.sort = state.sort === key ? `-${key}` : key;
      remember();
      loadTasks();
    });
  }
  $("#tasks-more").addEventListener("click", () => loadTasks(true));
  $("#executions-more").addEventListener("click", () => loadExecutions(true));
  $("#executions-close").addEventListener("click", () => {
    state.task = null;
    state.execution = null;
    remember();
    showTask();
  });
  $("#tasks-csv").addEventListener("click", downloadCsv);
  $("#executions-csv").addEventListener("click", downloadCsv);
  window.addEventListener("popstate", () => {
    readLocation();
    showFilters();
    loadTasks();
    loadOverview();
    showTask();
  });
  document.addEventListener("reconciler:changed", (event) => {
    const topics = (event.detail && event.detail.topics) || ["tasks", "executions", "applies"];
    refresh(topics);
  });
  // Relative times move on while the page stays open.
  setInterval(() => {
    for (const node of document.querySelectorAll("time.moment")) {
      node.querySelector(".relative").textContent = `(${relative(node.dateTime)})`;
    }
  }, 30000);
  loadTasks().then(() => Promise.all([loadOverview(), loadApplies(), showTask()]));
}

window.reconciler = { api, headers, el, when, announce, local, relative };
init();
