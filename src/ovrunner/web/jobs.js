// The jobs view: one bounded worker job through /exp/v1/worker/generate, its output, timings
// and busy-counter verdict. A job whose counter did not move answers 503 with the generation
// and the error together; the page shows both.

import { request } from "./api.js";
import { $, fillSelect } from "./dom.js";


export function setupJobs() {
  $("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
}

export function showJobs(names) {
  fillSelect($("job"), names);
}

async function run() {
  const result = $("job-result");
  const button = $("job-run");
  const maxTokens = $("job-max-tokens").valueAsNumber;
  const body = { job: $("job").value, input: $("job-input").value };
  if (Number.isFinite(maxTokens)) body.max_new_tokens = maxTokens;
  button.disabled = true;
  result.replaceChildren(line("Running…"));
  try {
    // A 503 (the counter did not move) still carries the job's answer, shown beside its error.
    const response = await request("/exp/v1/worker/generate", {
      method: "POST",
      body,
      accept: [503],
    });
    const answer = await response.json();
    result.replaceChildren(...describe(response.status, answer));
  } catch (error) {
    result.replaceChildren(line(`The job was refused: ${error.message}`, "error"));
  } finally {
    button.disabled = false;
  }
}

function line(text, className) {
  const p = document.createElement("p");
  p.textContent = text;
  if (className) p.className = className;
  return p;
}

function describe(status, answer) {
  if (answer.text === undefined) {
    // A 503 of another kind (the engine down, say): no generation to show.
    return [line(`The job failed (${status}): ${answer.error?.message}`, "error")];
  }
  const nodes = [];
  const verified = status === 200;
  const verdict = line(
    verified
      ? `Verified: the ${answer.busy_counter} busy counter moved by ${answer.busy_delta_us} µs.`
      : `Not verified: ${answer.error?.message ?? `status ${status}`}`,
    verified ? "verdict ok" : "verdict error",
  );
  verdict.dataset.testid = "job-verdict";
  nodes.push(verdict);
  const output = document.createElement("pre");
  output.className = "output";
  output.dataset.testid = "job-output";
  output.textContent = answer.json != null ? JSON.stringify(answer.json, null, 2) : answer.text;
  nodes.push(output);
  const timing = answer.timing_ms ?? {};
  const figures = document.createElement("dl");
  figures.className = "figures";
  const rows = [
    ["Model", `${answer.model} on ${answer.device}`],
    ["Generate", `${timing.generate} ms`],
    ["Total", `${timing.total} ms`],
    ["Busy delta", `${answer.busy_delta_us} µs (${answer.busy_counter})`],
  ];
  for (const [name, value] of rows) {
    const group = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value;
    if (name === "Busy delta") dd.dataset.testid = "job-busy-delta";
    group.append(dt, dd);
    figures.append(group);
  }
  nodes.push(figures);
  return nodes;
}
