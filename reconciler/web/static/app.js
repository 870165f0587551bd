// The read-only page: everything comes from /api/v1 with the same access rules as any client.
"use strict";

const state = { q: "", sort: "name", tasksCursor: null, task: null, execCursor: null };
const TOKEN_KEY = "reconciler.token";
let pendingLogin = null;

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
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
  return el("span", { class: "muted" }, task.last_success_at ? when(task.last_success_at) : "");
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
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

function tasksQuery(extra = {}) {
  const params = new URLSearchParams({ sort: state.sort, limit: "100", ...extra });
  if (state.q) params.set("q", state.q);
  return params;
}

async function loadTasks(append = false) {
  const params = tasksQuery();
  if (append && state.tasksCursor) params.set("cursor", state.tasksCursor);
  const csv = tasksQuery({ format: "csv" });
  csv.delete("limit");
  $("#tasks-csv").href = `/api/v1/tasks/?${csv}`;
  let page;
  try {
    page = await api(`/api/v1/tasks/?${params}`);
  } catch (error) {
    $("#status-line").textContent = error.message;
    return;
  }
  const body = $("#tasks tbody");
  if (!append) body.replaceChildren();
  for (const task of page.items) {
    const row = el("tr", { "data-task": task.name },
      el("td", {}, el("strong", {}, task.name), el("div", { class: "muted" }, task.description)),
      el("td", {}, task.owner), el("td", {}, task.type), el("td", {}, el("code", {}, task.schedule || "")),
      el("td", {}, task.enabled ? "yes" : "no"), el("td", {}, badge(task.last_status)),
      el("td", { class: "health" }, health(task)),
      el("td", {}, when(task.last_run)), el("td", {}, when(task.next_run)));
    row.addEventListener("click", () => openTask(task.name));
    body.append(row);
  }
  state.tasksCursor = page.next_cursor;
  $("#tasks-more").hidden = !page.next_cursor;
  $("#status-line").textContent = `${body.children.length} task(s)${page.next_cursor ? " shown" : ""}`;
  for (const th of document.querySelectorAll("#tasks th[data-sort]")) {
    const key = th.dataset.sort;
    th.classList.toggle("sorted-asc", state.sort === key);
    th.classList.toggle("sorted-desc", state.sort === `-${key}`);
  }
}

function executionDetail(execution) {
  const cell = el("td", { colSpan: 8 });
  if (execution.result !== null && execution.result !== undefined) {
    cell.append(el("div", { class: "muted" }, "result"), el("pre", { class: "result" }, JSON.stringify(execution.result, null, 2)));
  }
  if (execution.error) cell.append(el("div", { class: "error" }, execution.error));
  if (execution.traceback) cell.append(el("pre", { class: "traceback" }, execution.traceback));
  cell.append(el("div", { class: "muted" }, `args ${JSON.stringify(execution.args)} kwargs ${JSON.stringify(execution.kwargs)} · celery id ${execution.celery_task_id}`));
  return el("tr", { class: "exec-detail" }, cell);
}

async function loadExecutions(append = false) {
  const name = state.task;
  const params = new URLSearchParams({ limit: "50" });
  if (append && state.execCursor) params.set("cursor", state.execCursor);
  const page = await api(`/api/v1/tasks/${encodeURIComponent(name)}/executions?${params}`);
  const body = $("#executions tbody");
  if (!append) body.replaceChildren();
  if (!page.items.length && !append) body.append(el("tr", {}, el("td", { colSpan: 8, class: "muted" }, "No executions yet.")));
  for (const execution of page.items) {
    const row = el("tr", { class: "exec-row", "data-execution": String(execution.id) },
      el("td", {}, String(execution.id)), el("td", {}, badge(execution.status)), el("td", {}, execution.trigger),
      el("td", {}, when(execution.queued_at)), el("td", {}, when(execution.started_at)),
      el("td", {}, execution.duration_ms === null ? "" : `${execution.duration_ms} ms`),
      el("td", {}, execution.worker || ""), el("td", {}, String(execution.retries)));
    row.addEventListener("click", () => {
      const next = row.nextElementSibling;
      if (next && next.classList.contains("exec-detail")) next.remove();
      else row.after(executionDetail(execution));
    });
    body.append(row);
  }
  state.execCursor = page.next_cursor;
  $("#executions-more").hidden = !page.next_cursor;
}

async function openTask(name) {
  state.task = name;
  state.execCursor = null;
  for (const row of document.querySelectorAll("#tasks tbody tr")) row.classList.toggle("selected", row.dataset.task === name);
  $("#execution-task").textContent = name;
  $("#executions-csv").href = `/api/v1/tasks/${encodeURIComponent(name)}/executions?format=csv`;
  $("#execution-section").hidden = false;
  const task = await api(`/api/v1/tasks/${encodeURIComponent(name)}`);
  $("#task-source").textContent = `${task.task} · from ${task.source.path}:${task.source.line} · updated ${when(task.updated_at)}`;
  $("#task-health").textContent = [
    `last success ${when(task.last_success_at) || "never"}`,
    `last failure ${when(task.last_failure_at) || "never"}`,
    `${task.consecutive_failures} failure(s) in a row`,
  ].join(" · ");
  $("#task-health").classList.toggle("failing", task.consecutive_failures > 0);
  const stats = await api(`/api/v1/tasks/${encodeURIComponent(name)}/stats?days=7`);
  const day = stats.days[stats.days.length - 1];
  $("#task-stats").textContent = `last 7 days: ${stats.successes} succeeded, ${stats.failures} failed, ${stats.revoked} revoked` +
    (day && day.duration_p50_ms !== null ? ` · ${day.day}: p50 ${Math.round(day.duration_p50_ms)} ms, p95 ${Math.round(day.duration_p95_ms)} ms, max ${day.duration_max_ms} ms` : "");
  await loadExecutions();
}

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
  body.replaceChildren();
  for (const apply of page.items) {
    const names = (list) => (list.length ? ` (${list.join(", ")})` : "");
    body.append(el("tr", { "data-outcome": apply.outcome },
      el("td", {}, when(apply.applied_at)), el("td", {}, outcome(apply)),
      el("td", {}, `${apply.created}${names(apply.created_names)}`),
      el("td", {}, `${apply.updated}${names(apply.updated_names)}`), el("td", {}, `${apply.deleted}${names(apply.deleted_names)}`),
      el("td", {}, String(apply.unchanged)), el("td", { title: apply.git_commit || "" }, `${commit(apply)}${apply.git_dirty ? " (dirty)" : ""}`)));
  }
  if (!page.items.length) body.append(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No applies recorded.")));
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

function init() {
  let timer = null;
  $("#search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = event.target.value.trim();
      loadTasks();
    }, 200);
  });
  for (const th of document.querySelectorAll("#tasks th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      if (key === "next_run") state.sort = "next_run";
      else state.sort = state.sort === key ? `-${key}` : key;
      loadTasks();
    });
  }
  $("#tasks-more").addEventListener("click", () => loadTasks(true));
  $("#executions-more").addEventListener("click", () => loadExecutions(true));
  $("#executions-close").addEventListener("click", () => { $("#execution-section").hidden = true; });
  $("#tasks-csv").addEventListener("click", downloadCsv);
  $("#executions-csv").addEventListener("click", downloadCsv);
  loadTasks().then(loadApplies);
}

init();
