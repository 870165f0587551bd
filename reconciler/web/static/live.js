// Follows changes without a reload (docs/page.md, "Live"): a long poll of /api/v1/changes,
// answered from the server's memory; "reconciler:changed" tells the page what to read again.
"use strict";

(() => {
  const WAIT = 25; // seconds the server may hold a poll: below the usual proxy timeouts
  const RETRY_FIRST = 1000;
  const RETRY_MOST = 5000;
  const status = document.getElementById("live-status");
  let version = null;
  let retry = RETRY_FIRST;

  function show(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // One poll: the server's answer, or null when there was none (network, 401, 503, ...).
  async function poll() {
    const params = new URLSearchParams({ wait: version === null ? "0" : String(WAIT) });
    if (version !== null) params.set("since", version);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), (WAIT + 10) * 1000);
    try {
      const response = await fetch(`/api/v1/changes?${params}`, {
        headers: window.reconciler.headers(), cache: "no-store", signal: abort.signal,
      });
      return response.ok ? await response.json() : null;
    } catch (error) {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async function follow() {
    for (;;) {
      const answer = await poll();
      if (answer === null) {
        show("paused", "paused, retrying…");
        await sleep(retry);
        retry = Math.min(retry * 2, RETRY_MOST);
        continue;
      }
      retry = RETRY_FIRST;
      show("live", "live");
      // The first answer only sets the version: the page has just read everything.
      if (version !== null && answer.changed.length) {
        window.reconciler.announce("changed", { topics: answer.changed });
      }
      version = answer.version;
    }
  }

  follow();
})();
