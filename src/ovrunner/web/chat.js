// The chat view: a conversation with one model over /v1/chat/completions, streamed. Stop (or
// Escape) aborts the fetch; the server sees the client go and cancels the generation.

import { request, serverSentData } from "./api.js";
import { $, fillSelect } from "./dom.js";
import { renderMarkdown } from "./markdown.js";


let conversation = []; // {role, content} as sent to the server, the system prompt aside
let inFlight = null; // the AbortController of the answer being streamed

export function setupChat() {
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") stop();
  });
  $("stop").addEventListener("click", stop);
  $("clear").addEventListener("click", () => {
    stop();
    conversation = [];
    $("conversation").replaceChildren();
  });
}

// The chat models from /v1/models (embedding and reranking models cannot chat).
export function showModels(models) {
  const chat = models.filter((model) => (model.mode ?? "completion") === "completion");
  fillSelect($("model"), chat.map((model) => model.id));
}

function stop() {
  inFlight?.abort();
}

function addMessage(role) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : $("model").value;
  const body = document.createElement("div");
  body.className = "body";
  item.append(who, body);
  $("conversation").append(item);
  return { item, body };
}

function numberFrom(id) {
  const value = $(id).valueAsNumber;
  return Number.isFinite(value) ? value : undefined;
}

async function send() {
  const prompt = $("prompt").value;
  if (!prompt.trim() || inFlight) return;
  const model = $("model").value;
  if (!model) return;
  $("prompt").value = "";
  addMessage("user").body.textContent = prompt;
  conversation.push({ role: "user", content: prompt });

  // Only the latest answer carries the test ids.
  document.querySelectorAll("[data-testid=answer], [data-testid=answer-stats]").forEach((node) => {
    node.removeAttribute("data-testid");
  });
  const { item, body } = addMessage("assistant");
  body.dataset.testid = "answer";
  const stats = document.createElement("p");
  stats.className = "stats";
  stats.dataset.testid = "answer-stats";
  item.append(stats);

  const system = $("system-prompt").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...conversation] : conversation;
  inFlight = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  const answer = { content: "", reasoning: "" };
  const started = performance.now();
  let firstTokenAt = null;
  let usage = null;
  let finish = null;
  try {
    const response = await request("/v1/chat/completions", {
      method: "POST",
      signal: inFlight.signal,
      body: {
        model,
        messages: [...messages],
        stream: true,
        stream_options: { include_usage: true },
        temperature: numberFrom("temperature"),
        max_tokens: numberFrom("max-tokens"),
      },
    });
    let pending = false;
    for await (const data of serverSentData(response)) {
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices ?? []) {
        const delta = choice.delta ?? {};
        if (delta.content || delta.reasoning_content) firstTokenAt ??= performance.now();
        answer.content += delta.content ?? "";
        answer.reasoning += delta.reasoning_content ?? "";
        finish = choice.finish_reason ?? finish;
      }
      // One render a frame, however fast the tokens come.
      if (!pending) {
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          showAnswer(body, answer);
        });
      }
    }
    showAnswer(body, answer);
    stats.textContent = describe(usage, started, firstTokenAt, performance.now(), finish);
  } catch (error) {
    showAnswer(body, answer);
    if (error.name === "AbortError") {
      stats.textContent = `Stopped after ${seconds(performance.now() - started)}.`;
    } else {
      const problem = document.createElement("p");
      problem.className = "error";
      problem.setAttribute("role", "alert");
      problem.textContent = error.message;
      body.append(problem);
      stats.textContent = "Failed.";
    }
  } finally {
    if (answer.content) conversation.push({ role: "assistant", content: answer.content });
    else conversation.pop(); // a failed turn leaves no question without its answer
    inFlight = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

function showAnswer(body, answer) {
  if (answer.reasoning) {
    let details = body.previousElementSibling;
    if (!details?.classList.contains("reasoning")) {
      details = document.createElement("details");
      details.className = "reasoning";
      details.append(document.createElement("summary"), document.createElement("pre"));
      details.firstChild.textContent = "Reasoning";
      body.before(details);
    }
    details.lastChild.textContent = answer.reasoning;
  }
  renderMarkdown(body, answer.content);
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(2)} s`;
}

// Tokens from the server's usage; times as this page saw them. Tokens per second count the
// decoding after the first token, as llama.cpp's page does.
function describe(usage, started, firstTokenAt, ended, finish) {
  const parts = [];
  const tokens = usage?.completion_tokens;
  if (tokens !== undefined) parts.push(`${tokens} tokens`);
  if (firstTokenAt !== null) parts.push(`time to first token ${seconds(firstTokenAt - started)}`);
  if (tokens > 1 && firstTokenAt !== null && ended > firstTokenAt) {
    parts.push(`${((tokens - 1) / ((ended - firstTokenAt) / 1000)).toFixed(1)} tokens/s`);
  }
  if (finish === "length") parts.push("cut at max tokens");
  return parts.join(" · ");
}
