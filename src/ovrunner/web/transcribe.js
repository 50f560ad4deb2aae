// The transcribe view: an audio file, or a recording from the microphone, sent to
// /v1/audio/transcriptions as the SDK sends it (a multipart form), its text streamed in.

import { request, serverSentData } from "./api.js";
import { $, fillSelect } from "./dom.js";

let recorder = null;
let recorded = [];

export function setupTranscribe() {
  $("audio-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("audio-file").files[0];
    if (file) transcribe(file, file.name);
  });
  $("record").addEventListener("click", toggleRecording);
}

export function showTranscriptionModels(models) {
  const speech = models.filter((model) => model.mode === "transcription");
  fillSelect($("audio-model"), speech.map((model) => model.id));
  $("audio-empty").hidden = speech.length > 0;
}

async function toggleRecording() {
  const button = $("record");
  if (recorder) {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    show(`The microphone is not available: ${error.message}`, "error");
    return;
  }
  recorded = [];
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (event) => recorded.push(event.data));
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    recorder = null;
    button.textContent = "Record";
    button.setAttribute("aria-pressed", "false");
    transcribe(new Blob(recorded, { type: recorded[0]?.type || "audio/webm" }), "recording.webm");
  });
  recorder.start();
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
  show("Recording…");
}

async function transcribe(audio, name) {
  const form = new FormData();
  form.append("model", $("audio-model").value);
  const language = $("audio-language").value.trim();
  if (language) form.append("language", language);
  form.append("stream", "true");
  form.append("file", audio, name);
  const text = $("transcript");
  text.textContent = "";
  show("Transcribing…");
  $("transcribe").disabled = true;
  try {
    const response = await request("/v1/audio/transcriptions", { method: "POST", body: form });
    for await (const data of serverSentData(response)) {
      const event = JSON.parse(data);
      if (event.type === "transcript.text.delta") text.textContent += event.delta;
      else if (event.type === "transcript.text.done") {
        text.textContent = event.text;
        show(`Done: ${event.usage.seconds} s of audio.`, "ok");
      } else if (event.error) throw new Error(event.error.message);
    }
  } catch (error) {
    show(`The audio was refused: ${error.message}`, "error");
  } finally {
    $("transcribe").disabled = false;
  }
}

function show(message, className = "") {
  const status = $("audio-status");
  status.textContent = message;
  status.className = `verdict ${className}`.trim();
}
