// Small DOM helpers every page shares. No framework: a page is a function that fills `root`.

/** h("button", {class: "primary", onclick}, "Save") — attributes, properties and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An error from the API (or any Error) shown where it happened: what, which field, and code. */
export function errorBox(err, { title = "Something went wrong" } = {}) {
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, title),
    h("p", {}, err?.message || String(err)),
    err?.param ? h("p", { class: "muted" }, "Field: ", h("code", {}, err.param)) : null,
    err?.code ? h("p", { class: "muted" }, "Code: ", h("code", {}, err.code)) : null,
  );
}

/** A short message in the corner, for things that do not need a place on the page. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** A labelled form field: <label for> + control + help; `control` gets an id if it has none. */
let ids = 0;
export function field(label, control, help) {
  if (!control.id) control.id = `f${++ids}`;
  const helpEl = help ? h("small", { class: "help", id: `${control.id}-help` }, help) : null;
  if (helpEl) control.setAttribute("aria-describedby", helpEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, helpEl);
}

export function fmtTime(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "—";
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds); // round once, so 959.7 s is "16 min 0 s", not "15 min 60 s"
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const minutes = Math.round(s / 60);
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Run `fn` now and every `ms` until `signal` aborts; a failing call does not stop the loop. */
export function every(ms, fn, signal) {
  let timer = null;
  const tick = async () => {
    try {
      await fn();
    } catch (err) {
      if (err?.name !== "AbortError") console.warn(err);
    }
    if (!signal.aborted) timer = setTimeout(tick, ms);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  tick();
}

/** Copy text, with a toast to say it happened. */
export async function copy(text) {
  await navigator.clipboard.writeText(text);
  toast("Copied.");
}

/** Offer text as a file download (a YAML config, a CSV). */
export function saveText(text, filename, type = "text/plain") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A status word as a badge whose colour says running / ended well / ended badly. */
export function badge(status) {
  const kind =
    {
      succeeded: "good",
      running: "busy",
      validating_files: "busy",
      queued: "wait",
      paused: "wait",
      failed: "bad",
      cancelled: "muted",
    }[status] || "muted";
  return h("span", { class: `badge ${kind}`, dataset: { status } }, status.replace("_", " "));
}
