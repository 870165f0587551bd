// Pictures of executions and slots, drawn as plain SVG (docs/page.md, "Pictures"): per task a
// strip of the recent executions and their durations; for the fleet the slots of the next
// hours and the starts of the last ones (GET /api/v1/timeline).
"use strict";

(() => {
  const NS = "http://www.w3.org/2000/svg";
  const RECENT = 100; // executions in the strip and the duration chart
  const HOURS = 24;
  const BUCKET = 300; // seconds
  const MINUTE = 60000;
  const DAY = 86400000;
  const { api, when } = window.reconciler;
  const shown = { task: null, executions: null, stats: null, timeline: null, width: 0 };
  let ids = 0;

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child));
    return node;
  }

  // An SVG picture: its name for assistive technology, its summary the caption below it.
  function picture(kind, width, height, name, summary) {
    const id = `chart-summary-${++ids}`;
    const root = svg("svg", {
      class: `chart ${kind}`, viewBox: `0 0 ${width} ${height}`, width: "100%",
      role: "img", "aria-label": name, "aria-describedby": id,
    }, svg("title", {}, name));
    const caption = document.createElement("p");
    caption.className = "chart-caption";
    caption.id = id;
    caption.textContent = summary;
    return { root, caption };
  }

  function text(x, y, content, attrs = {}) {
    return svg("text", { x, y, class: "chart-axis", ...attrs }, content);
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
    if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  function hhmm(ms) {
    return new Date(ms).toISOString().slice(11, 16);
  }

  function dayTime(ms) {
    return new Date(ms).toISOString().slice(5, 16).replace("T", " ");
  }

  // The smallest 1, 2 or 5 times a power of ten at or above value.
  function ceiling(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((step) => step * power).find((limit) => limit >= value);
  }

  function plural(count, word) {
    return `${count} ${word}${count === 1 ? "" : "s"}`;
  }

  // --- a task: the strip of recent executions and their durations ----------------------------

  function strip(executions, width) {
    const items = executions.slice().reverse(); // oldest first, newest on the right
    const height = 24;
    const cell = width / Math.max(items.length, 1);
    const counts = {};
    for (const item of items) counts[item.status] = (counts[item.status] || 0) + 1;
    const newest = executions[0];
    const name = `Status of the last ${plural(items.length, "execution")}, oldest to newest`;
    const summary = `Last ${plural(items.length, "execution")}: ` +
      Object.entries(counts).map(([status, count]) => `${count} ${status}`).join(", ") +
      `; the newest ${newest.status}, queued ${when(newest.queued_at)}.`;
    const { root, caption } = picture("chart-strip", width, height, name, summary);
    items.forEach((item, index) => {
      const tip = `#${item.id} ${item.status} · queued ${when(item.queued_at)}` +
        (item.duration_ms === null ? "" : ` · ${duration(item.duration_ms)}`);
      root.append(svg("rect", {
        x: (index * cell).toFixed(2), y: 0, width: Math.max(cell - (cell > 4 ? 1 : 0), 0.5).toFixed(2), height,
        class: `chart-status chart-status-${item.status}`, "data-execution": item.id,
      }, svg("title", {}, tip)));
    });
    return [root, caption];
  }

  // The p50 and p95 of each UTC day that overlaps the chart, as level lines across the day.
  function percentileLines(days, x, y, start, end) {
    const lines = [];
    for (const day of days) {
      if (day.duration_p50_ms === null || day.duration_p95_ms === null) continue;
      const from = Math.max(Date.parse(`${day.day}T00:00:00Z`), start);
      const until = Math.min(Date.parse(`${day.day}T00:00:00Z`) + DAY, end);
      if (until <= from) continue;
      for (const [key, kind] of [["duration_p50_ms", "chart-p50"], ["duration_p95_ms", "chart-p95"]]) {
        const level = y(day[key]).toFixed(1);
        lines.push(svg("line", { x1: x(from).toFixed(1), x2: x(until).toFixed(1), y1: level, y2: level, class: kind },
          svg("title", {}, `${day.day}: ${kind.slice(6)} ${duration(day[key])}`)));
      }
    }
    return lines;
  }

  function durations(executions, stats, width) {
    const points = executions
      .filter((item) => item.duration_ms !== null)
      .map((item) => ({ at: Date.parse(item.started_at || item.queued_at), ms: item.duration_ms, item }))
      .sort((a, b) => a.at - b.at);
    if (!points.length) {
      const note = document.createElement("p");
      note.className = "chart-caption";
      note.textContent = "No finished execution with a duration yet.";
      return [note];
    }
    const height = 170;
    const margin = { left: 56, right: 8, top: 14, bottom: 22 };
    let start = points[0].at;
    let end = points[points.length - 1].at;
    if (end - start < 2 * MINUTE) {
      start -= 30 * MINUTE;
      end += 30 * MINUTE;
    }
    const overlaps = (day) => Date.parse(`${day.day}T00:00:00Z`) + DAY > start && Date.parse(`${day.day}T00:00:00Z`) < end;
    const days = ((stats && stats.days) || []).filter(overlaps);
    const levels = days.map((day) => day.duration_p95_ms || 0);
    const top = ceiling(Math.max(...points.map((p) => p.ms), ...levels));
    const x = (at) => margin.left + ((at - start) / (end - start)) * (width - margin.left - margin.right);
    const y = (ms) => margin.top + (1 - ms / top) * (height - margin.top - margin.bottom);
    const slowest = points.reduce((a, b) => (b.ms > a.ms ? b : a));
    const latest = days.filter((day) => day.duration_p50_ms !== null).pop();
    const name = `Durations of the last ${plural(points.length, "finished execution")}`;
    const summary = `Durations from ${dayTime(start)} to ${dayTime(end)} UTC: the slowest ` +
      `${duration(slowest.ms)} (#${slowest.item.id}), the latest ${duration(points[points.length - 1].ms)}` +
      (latest ? `; on ${latest.day} p50 ${duration(latest.duration_p50_ms)}, p95 ${duration(latest.duration_p95_ms)}.` : ".");
    const { root, caption } = picture("chart-durations", width, height, name, summary);
    for (const fraction of [0, 0.5, 1]) {
      const level = y(top * fraction).toFixed(1);
      root.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: level, y2: level, class: "chart-grid" }),
        text(margin.left - 6, Number(level) + 4, duration(top * fraction), { "text-anchor": "end" }));
    }
    const bottom = height - 6;
    root.append(text(margin.left, bottom, dayTime(start)),
      text(width - margin.right, bottom, `${dayTime(end)} UTC`, { "text-anchor": "end" }));
    root.append(...percentileLines(days, x, y, start, end));
    if (points.length > 1) {
      const path = points.map((p) => `${x(p.at).toFixed(1)},${y(p.ms).toFixed(1)}`).join(" ");
      root.append(svg("polyline", { points: path, class: "chart-line" }));
    }
    for (const point of points) {
      root.append(svg("circle", {
        cx: x(point.at).toFixed(1), cy: y(point.ms).toFixed(1), r: 3,
        class: `chart-point chart-status-${point.item.status}`,
      }, svg("title", {}, `#${point.item.id} ${point.item.status} · ${when(point.item.started_at || point.item.queued_at)} · ${duration(point.ms)}`)));
    }
    if (latest) {
      root.append(text(width - margin.right, 10, "p50 —  p95 - -  (per UTC day)", { "text-anchor": "end", class: "chart-axis chart-legend" }));
    }
    return [root, caption];
  }

  function drawTask() {
    const box = document.getElementById("task-charts");
    if (!box || !shown.executions) return;
    const width = Math.max(Math.floor(box.clientWidth), 240);
    if (!shown.executions.length) {
      const note = document.createElement("p");
      note.className = "chart-caption";
      note.textContent = "No executions to draw yet.";
      box.replaceChildren(note);
      return;
    }
    box.replaceChildren(...strip(shown.executions, width), ...durations(shown.executions, shown.stats, width));
  }

  async function loadTask(name) {
    const path = `/api/v1/tasks/${encodeURIComponent(name)}`;
    let page;
    let stats = null;
    try {
      page = await api(`${path}/executions?limit=${RECENT}`);
      const oldest = page.items.length ? Date.parse(page.items[page.items.length - 1].queued_at) : Date.now();
      const days = Math.min(Math.max(Math.ceil((Date.now() - oldest) / DAY) + 1, 1), 366);
      stats = await api(`${path}/stats?days=${days}`).catch(() => null);
    } catch (error) {
      if (shown.task !== name) return;
      const box = document.getElementById("task-charts");
      const note = document.createElement("p");
      note.className = "chart-caption";
      note.textContent = `Charts unavailable: ${error.message}`;
      box.replaceChildren(note);
      return;
    }
    if (shown.task !== name) return; // another task was opened meanwhile
    shown.executions = page.items;
    shown.stats = stats;
    drawTask();
  }

  // --- the fleet: slots of the next hours, starts of the last ones -----------------------------

  function hourTicks(start, end, width, x) {
    const every = (width < 560 ? 6 : 3) * 3600000;
    const ticks = [];
    for (let at = Math.ceil(start / every) * every; at <= end; at += every) {
      ticks.push(svg("line", { x1: x(at).toFixed(1), x2: x(at).toFixed(1), y1: 0, y2: "100%", class: "chart-grid" }));
      if (x(at) + 34 <= width) ticks.push(text(x(at) + 3, 11, hhmm(at))); // no label cut at the edge
    }
    return ticks;
  }

  function topNames(bucket) {
    return bucket.top.map((each) => `${each.name} (${each.slots})`).join(", ");
  }

  // A timeline window's time axis: x of an instant, and a bucket's left edge and width.
  function timeAxis(window_, data, width, margin) {
    const start = Date.parse(window_.from);
    const end = Date.parse(window_.until);
    const size = data.bucket_seconds * 1000;
    const x = (at) => margin.left + ((at - start) / (end - start)) * (width - margin.left - margin.right);
    const span = (bucket) => {
      const left = x(Math.max(Date.parse(bucket.at), start));
      return [left, Math.max(x(Math.min(Date.parse(bucket.at) + size, end)) - left, 1)];
    };
    return { start, end, x, span };
  }

  function bar([left, wide], top, base, kind) {
    return svg("rect", {
      x: left.toFixed(2), y: top.toFixed(2), width: wide.toFixed(2), height: Math.max(base - top, 1).toFixed(2), class: kind,
    });
  }

  function coming(data, width) {
    const window_ = data.next;
    const height = 150;
    const margin = { left: 40, right: 4, top: 16, bottom: 4 };
    const { start, end, x, span } = timeAxis(window_, data, width, margin);
    const buckets = window_.buckets;
    const busiest = buckets.reduce((a, b) => (b.slots > a.slots ? b : a), buckets[0] || null);
    const top = ceiling(busiest ? busiest.slots : 1);
    const y = (count) => margin.top + (1 - count / top) * (height - margin.top - margin.bottom);
    const name = `Slots in the next ${data.hours} hours, per ${data.bucket_seconds / 60} minutes`;
    const summary = busiest
      ? `Next ${data.hours} hours: ${plural(window_.slots, "slot")} of ${plural(data.tasks, "task")}; ` +
        `the busiest ${data.bucket_seconds / 60} minutes from ${hhmm(Date.parse(busiest.at))} UTC ` +
        `with ${plural(busiest.slots, "slot")}, most from ${topNames(busiest)}.`
      : `Nothing fires in the next ${data.hours} hours.`;
    const { root, caption } = picture("chart-timeline chart-next", width, height, name, summary);
    root.append(...hourTicks(start, end, width, x));
    root.append(text(margin.left - 4, y(top) + 4, String(top), { "text-anchor": "end" }),
      text(margin.left - 4, y(0), "0", { "text-anchor": "end" }));
    for (const bucket of buckets) {
      const rect = bar(span(bucket), y(bucket.slots), y(0), bucket === busiest ? "chart-slots chart-peak" : "chart-slots");
      rect.append(svg("title", {}, `${hhmm(Date.parse(bucket.at))} UTC: ${plural(bucket.slots, "slot")} of ${plural(bucket.tasks, "task")}; most: ${topNames(bucket)}`));
      root.append(rect);
    }
    root.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0), class: "chart-baseline" }));
    return [root, caption];
  }

  function past(data, width) {
    const window_ = data.last;
    const height = 190;
    const lateHeight = 44;
    const margin = { left: 40, right: 4, top: 16, bottom: lateHeight + 10 };
    const { start, end, x, span } = timeAxis(window_, data, width, margin);
    const buckets = window_.buckets;
    const top = ceiling(Math.max(1, ...buckets.map((b) => Math.max(b.expected, b.planned))));
    const lates = buckets.map((b) => b.start_late_max_ms).filter((ms) => ms !== null);
    const lateTop = ceiling(Math.max(1, ...lates));
    const y = (count) => margin.top + (1 - count / top) * (height - margin.top - margin.bottom);
    const lateBase = height - 2;
    const lateY = (ms) => lateBase - (ms / lateTop) * (lateHeight - 14);
    const name = `Slots of the last ${data.hours} hours: expected, written and started, and how late they started`;
    const missing = Math.max(window_.expected - window_.planned, 0);
    const summary = `Last ${data.hours} hours: ${plural(window_.expected, "slot")} by today's schedules, ` +
      `${plural(window_.planned, "execution")} written for slots, ${window_.started} started` +
      (missing ? ` (${missing} fewer written than expected)` : "") +
      (lates.length ? `; the latest start came ${duration(Math.max(...lates))} after its slot.` : ".");
    const { root, caption } = picture("chart-timeline chart-last", width, height, name, summary);
    root.append(...hourTicks(start, end, width, x));
    root.append(text(margin.left - 4, y(top) + 4, String(top), { "text-anchor": "end" }),
      text(margin.left - 4, lateBase - (lateHeight - 14) + 4, duration(lateTop), { "text-anchor": "end" }),
      text(margin.left + 3, lateBase - (lateHeight - 14) - 2, "start lateness, the most per bucket", { class: "chart-axis chart-legend" }));
    for (const bucket of buckets) {
      const edges = span(bucket);
      const tip = `${hhmm(Date.parse(bucket.at))} UTC: ${bucket.expected} expected, ${bucket.planned} written, ` +
        `${bucket.started} started` + (bucket.start_late_max_ms === null ? "" :
        `; started ${duration(bucket.start_late_avg_ms)} late on average, at most ${duration(bucket.start_late_max_ms)}`);
      const group = svg("g", { class: "chart-bucket" }, svg("title", {}, tip));
      for (const [key, kind] of [["expected", "chart-expected"], ["planned", "chart-planned"], ["started", "chart-started"]]) {
        if (bucket[key]) group.append(bar(edges, y(bucket[key]), y(0), kind));
      }
      if (bucket.start_late_max_ms !== null) group.append(bar(edges, lateY(bucket.start_late_max_ms), lateBase, "chart-late"));
      root.append(group);
    }
    root.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0), class: "chart-baseline" }),
      svg("line", { x1: margin.left, x2: width - margin.right, y1: lateBase, y2: lateBase, class: "chart-baseline" }));
    const legend = document.createElement("p");
    legend.className = "chart-legend-row";
    for (const [kind, label] of [["chart-expected", "expected"], ["chart-planned", "written"], ["chart-started", "started"], ["chart-late", "late"]]) {
      legend.append(svg("svg", { class: "chart-key", viewBox: "0 0 10 10", width: 10, height: 10, "aria-hidden": "true" },
        svg("rect", { x: 0.5, y: 0.5, width: 9, height: 9, class: kind })), ` ${label} `);
    }
    return [root, legend, caption];
  }

  function drawTimeline() {
    const box = document.getElementById("timeline");
    const data = shown.timeline;
    if (!box || !data) return;
    const width = Math.max(Math.floor(box.clientWidth), 240);
    const heading = (words) => {
      const node = document.createElement("h3");
      node.textContent = words;
      return node;
    };
    box.replaceChildren(heading(`Next ${data.hours} hours (UTC)`), ...coming(data, width),
      heading(`Last ${data.hours} hours (UTC)`), ...past(data, width));
  }

  let timelineLoading = null;
  async function loadTimeline() {
    if (timelineLoading) return timelineLoading;
    timelineLoading = (async () => {
      try {
        shown.timeline = await api(`/api/v1/timeline?hours=${HOURS}&bucket=${BUCKET}`);
        drawTimeline();
      } catch (error) {
        const note = document.createElement("p");
        note.className = "chart-caption";
        note.textContent = `Timeline unavailable: ${error.message}`;
        document.getElementById("timeline").replaceChildren(note);
      } finally {
        timelineLoading = null;
      }
    })();
    return timelineLoading;
  }

  document.addEventListener("reconciler:task-opened", (event) => {
    shown.task = event.detail.name;
    shown.executions = null;
    document.getElementById("task-charts").replaceChildren();
    loadTask(shown.task);
  });
  document.addEventListener("reconciler:task-closed", () => {
    shown.task = null;
    shown.executions = null;
    document.getElementById("task-charts").replaceChildren();
  });
  document.addEventListener("reconciler:changed", (event) => {
    const topics = (event.detail && event.detail.topics) || [];
    if (topics.includes("executions") && shown.task) loadTask(shown.task);
    if (topics.includes("executions") || topics.includes("tasks")) loadTimeline();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      const width = document.getElementById("timeline").clientWidth;
      if (width === shown.width) return;
      shown.width = width;
      drawTask();
      drawTimeline();
    }, 150);
  });

  // A task opened before this script ran (an address naming it) is drawn as well.
  const section = document.getElementById("execution-section");
  const opened = document.getElementById("execution-task");
  if (section && !section.hidden && opened && opened.textContent) {
    shown.task = opened.textContent;
    loadTask(shown.task);
  }
  shown.width = document.getElementById("timeline").clientWidth;
  loadTimeline();
})();
