// Building the page without ever parsing text as HTML: every value is set with
// textContent or setAttribute, addresses only when they are https (or data:
// images), so a listing's text, which its seller wrote, is only ever text.

/** Element `tag` with `props` (attributes; `text`, `class`, handlers `on…`) and children. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value === "function") el.addEventListener(key.slice(2), value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "src" || key === "href") {
      const url = safeUrl(value, key === "src");
      if (url) el.setAttribute(key, url);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** `value` as an https address, one of the app's own files or fragments, or (for images) a data: image; else null. */
export function safeUrl(value, image = false) {
  const text = String(value);
  if (text.startsWith("#") || text.startsWith("/app/")) return text;
  if (image && /^data:image\/(png|jpeg|gif|webp|svg\+xml)[;,]/.test(text)) return text;
  try {
    const url = new URL(text);
    return url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Replaces what `root` shows. */
export function show(root, ...children) {
  root.replaceChildren();
  add(root, children);
}

/** A description list of [label, value] pairs, skipping empty values. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, v]) => v != null && v !== "")
      .map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", {}, v instanceof Node ? v : fmt(v)))),
  );
}

/** Any JSON value as short text. */
export function fmt(value) {
  if (value == null) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A timestamp in the reader's locale. */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** m:ss of a duration in milliseconds. */
export function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
