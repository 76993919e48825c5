// Small DOM helpers: element building, the error notice, numbers.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false)
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export const panel = () => document.getElementById("panel");

export function show(...nodes) {
  const p = panel();
  p.replaceChildren(...nodes);
  const heading = p.querySelector("h2");
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

// The SPEC §7 error: message and hint, announced to screen readers.
export function errorNotice(err, ...extra) {
  return h("div", { class: "notice", role: "alert" },
    h("p", {}, h("strong", {}, err.code ? `${err.code}: ` : "Error: "), err.message),
    err.hint ? h("p", { class: "help" }, "Hint: ", err.hint) : null, ...extra);
}

export function notice(text, kind = "info") {
  return h("div", { class: `notice ${kind}`, role: "status" }, text);
}

export function field(id, labelText, input, help) {
  input.id = id;
  if (help) input.setAttribute("aria-describedby", `${id}-help`);
  return h("div", { class: input.type === "checkbox" ? "check" : "" },
    input.type === "checkbox" ? [input, " ", h("label", { for: id }, labelText)]
      : [h("label", { for: id }, labelText), input],
    help ? h("p", { class: "help", id: `${id}-help` }, help) : null);
}

const UNITS = ["B", "kB", "MB", "GB", "TB"];
export function bytes(n) {
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${UNITS[i]}`;
}
export const count = (n) => Number(n).toLocaleString("en");

export function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// Runs an async action from a button: disabled meanwhile, errors shown in `where`.
export async function act(button, where, fn) {
  button.disabled = true;
  where.replaceChildren();
  try { await fn(); } catch (err) { where.replaceChildren(errorNotice(err)); } finally { button.disabled = false; }
}
