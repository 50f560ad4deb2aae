// The page's start: tabs, the API key form, and filling the pickers. Each view lives in its
// own module (chat.js, jobs.js, transcribe.js, status.js); api.js is their only way to the
// server.

import { getJson, hasApiKey, onAuthRequired, setApiKey } from "./api.js";
import { setupChat, showModels } from "./chat.js";
import { $ } from "./dom.js";
import { setupJobs, showJobs } from "./jobs.js";
import { redrawChart, startStatus } from "./status.js";
import { setupTranscribe, showTranscriptionModels } from "./transcribe.js";


function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        $(other.getAttribute("aria-controls")).hidden = !selected;
      }
      if (tab.id === "tab-status") redrawChart();
    });
  }
}

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function setupKeyForm() {
  onAuthRequired((message) => {
    $("key-message").textContent = hasApiKey()
      ? `The server refused that key (${message}). Enter the right one.`
      : "This server needs an API key.";
    if ($("key-form").hidden) {
      $("key-form").hidden = false;
      $("api-key").focus();
    }
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value);
    $("api-key").value = "";
    $("key-form").hidden = true;
    load();
  });
}

// The models and jobs the pickers offer. A refused key shows the key form instead.
async function load() {
  try {
    const [models, health] = await Promise.all([getJson("/v1/models"), getJson("/healthz")]);
    showModels(models.data);
    showTranscriptionModels(models.data);
    showJobs(health.jobs);
    notice("");
  } catch (error) {
    if (error.status !== 401) notice(`The server could not be reached: ${error.message}`);
  }
}

setupTabs();
setupKeyForm();
setupChat();
setupJobs();
setupTranscribe();
load().then(startStatus);
