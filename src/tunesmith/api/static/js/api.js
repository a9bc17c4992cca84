// The one way the UI talks to the server: the same /v1 API the SDK uses, with the user's key.
// The key lives in this tab's sessionStorage and travels as `Authorization: Bearer`; it is never
// a cookie, so no other site's page can make the browser send it.

const KEY = "tunesmith.api-key";

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** OpenAI's error JSON as an exception: message, type, param, code, and the HTTP status. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.type = error?.type || null;
    this.param = error?.param || null;
    this.code = error?.code || null;
  }
}

function headers(extra = {}) {
  const out = { ...extra };
  const key = getKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function failure(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    error = { message: `${response.status} ${response.statusText}` };
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("tunesmith:unauthorized"));
  return new ApiError(response.status, error);
}

/** Call the API: `api("/v1/models")`, `api("/v1/x", {method: "POST", json: {...}})`.
 * Answers parsed JSON (or text for non-JSON answers); throws ApiError on a 4xx/5xx. */
export async function api(path, { method = "GET", json, body, signal, raw = false } = {}) {
  const init = { method, signal, headers: headers() };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  if (raw) return response;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** POST a streaming request and yield each server-sent event's parsed data until [DONE]. */
export async function* stream(path, json, signal) {
  const response = await fetch(path, {
    method: "POST",
    signal,
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...json, stream: true }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event.error) throw new ApiError(400, event.error);
      yield event;
    }
  }
}

/** Upload a file (purpose fine-tune by default), reporting progress as a share 0..1. */
export function upload(file, { purpose = "fine-tune", onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/files");
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onload = () => {
      if (xhr.status < 400) return resolve(xhr.response);
      if (xhr.status === 401) window.dispatchEvent(new CustomEvent("tunesmith:unauthorized"));
      reject(new ApiError(xhr.status, xhr.response?.error));
    };
    xhr.onerror = () => reject(new ApiError(0, { message: "The server did not answer." }));
    xhr.send(form);
  });
}

/** Fetch a file with the key and hand it to the browser as a download named `filename`. */
export async function download(path, filename) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Every item of a paginated OpenAI list (`{data, has_more}`), following `after`. */
export async function listAll(path, { limit = 100 } = {}) {
  const items = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=${limit}${after ? `&after=${after}` : ""}`);
    items.push(...page.data);
    if (!page.has_more || !page.data.length) return items;
    after = page.data[page.data.length - 1].id;
  }
}
