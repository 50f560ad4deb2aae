// The page's one way to the server: the same API every client uses, with the API key (if the
// server has one) as a bearer token. The key lives in this tab's sessionStorage only.

const KEY_ITEM = "ovrunner.api-key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export function hasApiKey() {
  return sessionStorage.getItem(KEY_ITEM) !== null;
}

// Listeners for a refused key (401): the page asks for one.
const authListeners = [];
export function onAuthRequired(listener) {
  authListeners.push(listener);
}

// fetch() with the key and a JSON body (a FormData body goes as the multipart form it is); a response that is not 2xx (nor in `accept`) becomes an
// ApiError carrying the server's own message (every route answers {"error": {"message": ...}}).
export async function request(path, { method = "GET", body, signal, accept = [] } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.Authorization = `Bearer ${key}`;
  const form = body instanceof FormData;
  if (body !== undefined && !form) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined || form ? body : JSON.stringify(body),
    signal,
  });
  if (!response.ok && !accept.includes(response.status)) {
    const message = await errorMessage(response);
    if (response.status === 401) authListeners.forEach((listener) => listener(message));
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function getJson(path) {
  return (await request(path)).json();
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    const error = body.error ?? body;
    return (typeof error === "string" ? error : error.message) || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// The data of each server-sent event of a streamed response, until `[DONE]` or the end.
export async function* serverSentData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield data;
    }
  }
}
