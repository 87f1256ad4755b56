// Charts drawn in the page as inline SVG: a time series (line or bars, one or
// more series) and intervals (a point with its 95% interval per row). Each
// chart is a <figure> whose SVG carries a title and a description, followed by
// the same numbers as a table, so a screen reader (or a curious reader) gets
// the data and not only the picture. Every value is set as text or attribute.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1d4ed8", "#b45309", "#15803d", "#7c3aed"];
let serial = 0;

/** SVG element `tag` with attributes `attrs` and children. */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A round number at or above `max` (1, 2 or 5 times a power of ten), at least `floor`. */
function niceMax(max, floor = 1) {
  if (!(max > 0)) return floor;
  const p = 10 ** Math.floor(Math.log10(max));
  const m = [1, 2, 5, 10].find((f) => f * p >= max);
  return Math.max(m * p, floor);
}

/** `v` as short text: integers plain, others with up to `digits` decimals. */
export function num(v, digits = 1) {
  if (v == null || !Number.isFinite(v)) return "—";
  if (Number.isInteger(v)) return v.toLocaleString();
  return v.toLocaleString(undefined, { maximumFractionDigits: digits });
}

const hhmm = (d) => d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
const day = (d) => d.toLocaleDateString(undefined, { month: "short", day: "numeric" });

/** A bucket start as a label, by the window's length. */
function stamp(iso, spanMs, dates = false) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  if (dates) return day(d);
  return spanMs > 36 * 3600_000 ? `${day(d)} ${hhmm(d)}` : hhmm(d);
}

/** The figure around a chart: caption, the SVG, and a data table. */
function figure(name, caption, svg, headers, rows, points) {
  const table = h(
    "details",
    { class: "chart-data" },
    h("summary", { text: t("data_table") }),
    h(
      "div",
      { class: "scroll", tabindex: "0" },
      h("table", {}, h("caption", { text: caption }), h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", text: x })))), h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h(i ? "td" : "th", i ? {} : { scope: "row" }, String(c))))))),
    ),
  );
  return h("figure", { class: "chart", "data-chart": name, "data-points": points }, h("figcaption", { text: caption }), svg, table);
}

/** The width to draw at: the figure's room on the page, within bounds. */
function widthOf(host) {
  const w = host?.clientWidth || 480;
  return Math.max(280, Math.min(760, Math.floor(w)));
}

/**
 * A time series in `host`: `buckets` [{at, ...}], `series` [{key, label, kind: "line"|"bar"}],
 * `unit` words after a value. Missing (null) values leave gaps.
 */
export function timeChart(host, { name, title, buckets, series, unit = "", digits = 1, dates = false }) {
  const W = widthOf(host);
  const H = 200;
  const pad = { l: 44, r: 10, t: 12, b: 40 };
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const n = buckets.length;
  const values = series.flatMap((se) => buckets.map((b) => b[se.key]).filter((v) => typeof v === "number"));
  const top = niceMax(Math.max(0, ...values), 1);
  const y = (v) => pad.t + ih - (v / top) * ih;
  const slot = iw / Math.max(n, 1);
  const x = (i) => pad.l + slot * (i + 0.5);
  const id = `chart-${++serial}`;
  const spanMs = n > 1 ? Date.parse(buckets[n - 1].at) - Date.parse(buckets[0].at) : 0;

  const grid = [0, 0.5, 1].map((f) =>
    s("g", { class: "tick" }, s("line", { x1: pad.l, x2: W - pad.r, y1: y(top * f), y2: y(top * f) }), s("text", { x: pad.l - 6, y: y(top * f) + 4, "text-anchor": "end" }, num(top * f, digits))),
  );
  const labels = n
    ? [0, Math.floor((n - 1) / 2), n - 1]
        .filter((i, k, all) => all.indexOf(i) === k)
        .map((i, k, all) => s("text", { class: "xlabel", x: x(i), y: H - pad.b + 16, "text-anchor": all.length > 1 && k === 0 ? "start" : k === all.length - 1 && all.length > 1 ? "end" : "middle" }, stamp(buckets[i].at, spanMs, dates)))
    : [];
  const bars = series.filter((se) => se.kind === "bar");
  const barW = Math.max(1, (slot * 0.8) / Math.max(bars.length, 1));
  let points = 0;
  const marks = series.map((se, k) => {
    const color = COLORS[k % COLORS.length];
    if (se.kind === "bar") {
      const b = bars.indexOf(se);
      return s(
        "g",
        { class: `series bar-series`, fill: color },
        buckets.map((bucket, i) => {
          const v = bucket[se.key];
          if (typeof v !== "number") return null;
          if (v > 0) points += 1;
          const hgt = Math.max(v > 0 ? 1 : 0, (v / top) * ih);
          return s("rect", { class: "mark", "data-value": v, x: x(i) - (slot * 0.8) / 2 + b * barW, y: pad.t + ih - hgt, width: barW, height: hgt }, s("title", {}, `${stamp(bucket.at, spanMs, dates)}: ${num(v, digits)} ${unit}`.trim()));
        }),
      );
    }
    let d = "";
    let pen = false;
    const dots = buckets.map((bucket, i) => {
      const v = bucket[se.key];
      if (typeof v !== "number") {
        pen = false;
        return null;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      if (v > 0) points += 1;
      return s("circle", { class: "mark", "data-value": v, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, s("title", {}, `${stamp(bucket.at, spanMs, dates)}: ${num(v, digits)} ${unit}`.trim()));
    });
    return s("g", { class: "series line-series", stroke: color, fill: color }, s("path", { d, fill: "none", "stroke-width": 2 }), dots);
  });
  const legend = series.length > 1
    ? s("g", { class: "legend" }, series.map((se, k) => s("g", {}, s("rect", { x: pad.l + k * 130, y: H - 14, width: 10, height: 10, fill: COLORS[k % COLORS.length] }), s("text", { x: pad.l + k * 130 + 14, y: H - 5 }, se.label))))
    : null;

  const summary = series
    .map((se) => {
      const vs = buckets.map((b) => b[se.key]).filter((v) => typeof v === "number");
      if (!vs.length) return t("chart_no_values", { what: se.label });
      const total = vs.reduce((a, b) => a + b, 0);
      return t("chart_summary", { what: se.label, max: num(Math.max(...vs), digits), last: num(vs[vs.length - 1], digits), total: num(total, digits) });
    })
    .join(" ");
  const desc = n ? `${t("chart_span", { n, from: stamp(buckets[0].at, spanMs, dates), to: stamp(buckets[n - 1].at, spanMs, dates) })} ${summary}` : t("chart_empty");
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": `${id}-t ${id}-d`, class: "plot" },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, desc),
    s("g", { class: "grid" }, grid),
    s("g", { class: "axis" }, labels),
    marks,
    legend,
  );
  const rows = buckets.map((b) => [stamp(b.at, spanMs, dates), ...series.map((se) => num(b[se.key], digits))]);
  host.replaceChildren(figure(name, title, svg, [t("time"), ...series.map((se) => se.label)], rows, points));
}

/**
 * Intervals in `host`: `rows` [{label, value, low, high, note}] as shares in
 * [0, 1], drawn as a point with a whisker from low to high.
 */
export function intervalChart(host, { name, title, rows }) {
  const W = widthOf(host);
  const rowH = 40;
  const pad = { l: 10, r: 16, t: 8, b: 28 };
  const H = pad.t + pad.b + rowH * Math.max(rows.length, 1);
  const iw = W - pad.l - pad.r;
  const top = Math.min(1, niceMax(Math.max(0.01, ...rows.map((r) => r.high ?? r.value ?? 0)), 0.01));
  const x = (v) => pad.l + (Math.max(0, Math.min(v, top)) / top) * iw;
  const pct = (v) => (v == null || !Number.isFinite(v) ? "—" : `${(v * 100).toLocaleString(undefined, { maximumFractionDigits: 1 })}%`);
  const id = `chart-${++serial}`;
  let points = 0;
  const marks = rows.map((r, i) => {
    const yMid = pad.t + i * rowH + 28;
    const parts = [s("text", { class: "rowlabel", x: pad.l, y: pad.t + i * rowH + 13 }, `${r.label}  ${pct(r.value)}${r.note ? ` · ${r.note}` : ""}`)];
    parts.push(s("line", { class: "track", x1: pad.l, x2: W - pad.r, y1: yMid, y2: yMid }));
    if (r.low != null && r.high != null) {
      parts.push(s("line", { class: "whisker", x1: x(r.low), x2: x(r.high), y1: yMid, y2: yMid }));
      for (const v of [r.low, r.high]) parts.push(s("line", { class: "whisker", x1: x(v), x2: x(v), y1: yMid - 5, y2: yMid + 5 }));
    }
    if (r.value != null) {
      if (r.value > 0) points += 1;
      parts.push(s("circle", { class: "mark", "data-value": r.value, cx: x(r.value), cy: yMid, r: 4.5 }, s("title", {}, `${r.label}: ${pct(r.value)} (${pct(r.low)} – ${pct(r.high)})`)));
    }
    return s("g", { class: "interval" }, parts);
  });
  const ticks = [0, 0.5, 1].map((f) => s("text", { x: x(top * f), y: H - 8, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, pct(top * f)));
  const desc = rows.length ? rows.map((r) => t("interval_summary", { what: r.label, v: pct(r.value), low: pct(r.low), high: pct(r.high) })).join(" ") : t("chart_empty");
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": `${id}-t ${id}-d`, class: "plot" },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, desc),
    marks,
    s("g", { class: "axis" }, ticks),
  );
  const table = rows.map((r) => [r.label, pct(r.value), pct(r.low), pct(r.high), r.note ?? ""]);
  host.replaceChildren(figure(name, title, svg, [t("stratum"), t("share"), t("ci_low"), t("ci_high"), t("sample")], table, points));
}
