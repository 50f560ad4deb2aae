// The status view: engines, loaded runners (with an unload button), queue depth, the busy
// counter, and a chart of generated tokens/s and time to first token from /metrics. Polled
// every two seconds, the chart keeping the last five minutes.

import { getJson, request } from "./api.js";
import { drawChart } from "./chart.js";
import { $ } from "./dom.js";

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;

const samples = []; // {at, tokensPerSecond, ttftSeconds}
let previous = null; // the last /metrics reading: {at, tokens, ttftSum, ttftCount}

export function startStatus() {
  poll();
  setInterval(poll, POLL_MS);
  $("runners").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-model]");
    if (!button) return;
    button.disabled = true;
    await request("/engines/unload", { method: "POST", body: { models: [button.dataset.model] } });
    poll();
  });
}

async function poll() {
  const results = await Promise.allSettled([
    getJson("/engines/status").then(showEngines),
    getJson("/engines/ps").then(showRunners),
    getJson("/healthz").then(showBusyCounter),
    request("/metrics")
      .then((response) => response.text())
      .then(showMetrics),
  ]);
  const failed = results.find((result) => result.status === "rejected");
  $("chart-caption").dataset.stale = failed ? "true" : "false";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  return td;
}

function showEngines({ engines }) {
  $("engines").replaceChildren(
    ...engines.map((engine) => {
      const row = document.createElement("tr");
      const status = cell(engine.status);
      status.className = `state ${engine.status}`;
      const failed = engine.failed_runners.map((f) => `${f.model}: ${f.error}`).join("; ");
      row.append(cell(engine.name), status, cell(engine.modes.join(", ")),
        cell([engine.detail, failed].filter(Boolean).join(" — ")));
      return row;
    }),
  );
}

function showRunners({ runners }) {
  if (runners.length === 0) {
    const row = document.createElement("tr");
    const empty = cell("No model is loaded; one loads on its first request.");
    empty.colSpan = 9;
    row.append(empty);
    $("runners").replaceChildren(row);
    return;
  }
  $("runners").replaceChildren(
    ...runners.map((runner) => {
      const row = document.createElement("tr");
      row.dataset.model = runner.model;
      const running = runner.stats?.running;
      const unload = document.createElement("button");
      unload.type = "button";
      unload.textContent = "Unload";
      unload.dataset.model = runner.model;
      unload.setAttribute("aria-label", `Unload ${runner.model}`);
      const action = document.createElement("td");
      action.append(unload);
      const runningCell = cell(running);
      runningCell.dataset.testid = "runner-running";
      row.append(cell(runner.model), cell(runner.engine), cell(runner.device),
        cell(runner.error ? `${runner.state}: ${runner.error}` : runner.state),
        cell(runner.in_use), runningCell, cell(deadline(runner)), cell(mebibytes(runner.memory_bytes)),
        action);
      return row;
    }),
  );
}

function deadline(runner) {
  if (runner.keep_alive_s === null) return "kept loaded";
  if (!runner.expires_at) return runner.in_use > 0 ? "in use" : "–";
  const left = Math.max(0, Math.round(runner.expires_at - Date.now() / 1000));
  const at = new Date(runner.expires_at * 1000).toLocaleTimeString();
  return `${at} (in ${Math.floor(left / 60)} min ${left % 60} s)`;
}

function mebibytes(bytes) {
  if (!bytes) return "–";
  return bytes < 2 ** 20 ? "< 1 MiB" : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

function showBusyCounter(health) {
  $("busy-counter").textContent = health.busy_time_us === null
    ? `${health.busy_counter}: unreadable`
    : `${health.busy_counter}: ${(health.busy_time_us / 1e6).toFixed(2)} s busy`;
}

// Sums of the samples of each named metric in Prometheus' text format, over all labels.
export function metricSums(text) {
  const sums = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (Number.isFinite(value)) sums.set(match[1], (sums.get(match[1]) ?? 0) + value);
  }
  return sums;
}

function showMetrics(text) {
  const sums = metricSums(text);
  $("queue-depth").textContent = String(sums.get("ovrunner_queue_depth") ?? 0);
  const now = {
    at: Date.now(),
    tokens: sums.get("ovrunner_generated_tokens_total") ?? 0,
    ttftSum: sums.get("ovrunner_time_to_first_token_seconds_sum") ?? 0,
    ttftCount: sums.get("ovrunner_time_to_first_token_seconds_count") ?? 0,
  };
  if (previous && now.tokens >= previous.tokens) {
    const seconds = (now.at - previous.at) / 1000;
    const firsts = now.ttftCount - previous.ttftCount;
    samples.push({
      at: now.at,
      tokensPerSecond: (now.tokens - previous.tokens) / seconds,
      ttftSeconds: firsts > 0 ? (now.ttftSum - previous.ttftSum) / firsts : null,
    });
  }
  previous = now;
  while (samples.length && samples[0].at < now.at - WINDOW_MS) samples.shift();
  const latest = samples.at(-1);
  const ttfts = samples.filter((s) => s.ttftSeconds !== null);
  $("chart-caption").textContent = latest
    ? `Now ${latest.tokensPerSecond.toFixed(1)} tokens/s; ` +
      (ttfts.length ? `last time to first token ${ttfts.at(-1).ttftSeconds.toFixed(3)} s.` : "no request yet.")
    : "Sampling /metrics every 2 s.";
  if (!$("status-view").hidden) redrawChart();
}

export function redrawChart() {
  const now = Date.now();
  drawChart($("tokens-chart"), samples, now - WINDOW_MS, now);
}
