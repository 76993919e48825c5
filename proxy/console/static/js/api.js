// The API client: the key lives in sessionStorage and travels only in the X-API-Key header.
const KEY = "imagery-proxy.api-key";

export class ApiError extends Error {
  // A SPEC §7 error answer: {"error": {"code", "message", "hint", ...}}.
  constructor(status, detail) {
    super(detail.message || `HTTP ${status}`);
    this.status = status;
    this.code = detail.code || "http_error";
    this.hint = detail.hint || "";
    this.detail = detail;
  }
}

// The service's root (the console is served at <root>/console/): API paths are resolved
// against it, so a reverse proxy's prefix works.
export const ROOT = new URL("..", new URL(".", location.href));
export const apiUrl = (path) => new URL(path.replace(/^\//, ""), ROOT).href;

export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  forget: () => sessionStorage.removeItem(KEY),
};

let askKey = async () => { throw new ApiError(401, { code: "unauthorized", message: "no API key" }); };
export function onKeyNeeded(fn) { askKey = fn; }

async function errorOf(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  return new ApiError(resp.status, body?.error || { message: `${resp.status} ${resp.statusText}` });
}

// One API call; on 401 the key is asked again once and the call repeated.
export async function api(method, path, body, { raw = false, retried = false } = {}) {
  if (!apiKey.get()) await askKey();
  const headers = { "X-API-Key": apiKey.get() || "", Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(apiUrl(path), init);
  if (resp.status === 401 && !retried) {
    apiKey.forget();
    await askKey((await errorOf(resp)).message);
    return api(method, path, body, { raw, retried: true });
  }
  if (!resp.ok) throw await errorOf(resp);
  if (raw) return resp;
  if (resp.status === 204) return null;
  return resp.json();
}

// Server-Sent Events read with fetch(): EventSource cannot send the X-API-Key header.
// Calls onEvent(name, data) per event; resolves when the stream ends; abort with `signal`.
export async function streamEvents(path, onEvent, signal) {
  const resp = await fetch(apiUrl(path), {
    headers: { "X-API-Key": apiKey.get() || "", Accept: "text/event-stream" }, signal,
  });
  if (!resp.ok) throw await errorOf(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // heartbeat comment
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
