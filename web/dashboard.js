// The dashboards (#/dashboard): backlog hours and throughput over a chosen
// window, decisions and escalations per bucket, prevalence by stratum with its
// 95% interval, and the pipeline's health (dead letters, outbox lag), drawn
// with chart.js and refreshed every half minute while the page is open.

import { api } from "./api.js";
import { h, show } from "./dom.js";
import { t, explain } from "./i18n.js";
import { timeChart, intervalChart, num } from "./chart.js";

const WINDOWS = [
  [3600, "w_1h"],
  [6 * 3600, "w_6h"],
  [86400, "w_24h"],
  [7 * 86400, "w_7d"],
];
const REFRESH_MS = 30_000;
const KEY = "spotcheck.dashboard.window";

/** A figure: a label, a big number and a line of detail. */
function tile(name, label, value, detail, kind = "") {
  return h("div", { class: `tile ${kind}`, "data-tile": name }, h("span", { class: "tile-label", text: label }), h("strong", { class: "tile-value", text: value }), detail ? h("span", { class: "muted", text: detail }) : null);
}

/** Seconds as short words. */
function ago(secs) {
  if (secs == null || !Number.isFinite(secs)) return "—";
  if (secs < 90) return t("secs", { n: Math.round(secs) });
  if (secs < 5400) return t("mins", { n: Math.round(secs / 60) });
  return t("hours", { n: num(secs / 3600, 1) });
}

/** `#/dashboard`. */
export function dashboardView(root) {
  let alive = true;
  let timer = null;
  const saved = Number(localStorage.getItem(KEY));
  let windowSecs = WINDOWS.some(([w]) => w === saved) ? saved : 86400;
  const select = h("select", { id: "window" }, WINDOWS.map(([w, key]) => h("option", { value: String(w), selected: w === windowSecs, text: t(key) })));
  const status = h("p", { class: "muted", role: "status" });
  const tiles = h("div", { class: "tiles" });
  const hosts = {
    backlog: h("div", { class: "chart-host" }),
    throughput: h("div", { class: "chart-host" }),
    decisions: h("div", { class: "chart-host" }),
    prevalence: h("div", { class: "chart-host" }),
  };
  const prevNote = h("p", { class: "muted" });
  const page = h(
    "section",
    { class: "staff dashboard", "data-loaded": "false" },
    h("h1", { text: t("dashboard") }),
    h("div", { class: "filter" }, h("label", { for: "window", text: t("window") }), select),
    status,
    h("h2", { text: t("health") }),
    tiles,
    h("div", { class: "charts" }, hosts.backlog, hosts.throughput, hosts.decisions, h("div", {}, hosts.prevalence, prevNote)),
  );
  show(root, page);

  async function load() {
    clearTimeout(timer);
    status.textContent = t("loading");
    const [dash, stats, prev] = await Promise.allSettled([
      api("GET", `/v1/staff/dashboard?window_secs=${windowSecs}`),
      api("GET", "/v1/staff/stats"),
      api("GET", "/v1/staff/prevalence"),
    ]);
    if (!alive) return;
    const problems = [dash, stats, prev].filter((r) => r.status === "rejected").map((r) => explain(r.reason));
    status.textContent = problems.length ? problems.join(" · ") : t("updated_at", { t: new Date().toLocaleTimeString() });
    const d = dash.status === "fulfilled" ? dash.value : null;
    const st = stats.status === "fulfilled" ? stats.value : null;
    drawTiles(d?.now ?? {}, st);
    if (d) drawSeries(d);
    else for (const k of ["backlog", "throughput", "decisions"]) hosts[k].replaceChildren(h("p", { class: "problem", text: explain(dash.reason) }));
    if (prev.status === "fulfilled") drawPrevalence(prev.value);
    page.dataset.loaded = "true";
    timer = setTimeout(load, REFRESH_MS);
  }

  function drawTiles(now, st) {
    const dead = now.dead_lettered ?? st?.dead_lettered?.total ?? null;
    const lag = now.outbox_lag_secs ?? st?.outbox_lag_secs ?? null;
    const unsent = now.outbox_unsent ?? st?.outbox_unsent ?? null;
    const backlogHours = now.backlog_hours ?? st?.capacity?.backlog_hours ?? null;
    const pace = now.votes_per_hour ?? st?.capacity?.votes_per_hour ?? null;
    const byQueue = Object.entries(st?.dead_lettered?.by_queue ?? {}).filter(([, n]) => n > 0);
    show(
      tiles,
      tile("dead_letters", t("dead_letters"), num(dead, 0), byQueue.length ? byQueue.map(([q, n]) => `${q}: ${n}`).join(", ") : t("dead_letters_hint"), dead > 0 ? "bad" : ""),
      tile("outbox_lag", t("outbox_lag"), ago(lag), t("outbox_unsent", { n: num(unsent, 0) }), lag > 60 ? "warn" : ""),
      tile("backlog", t("backlog"), backlogHours == null ? "—" : t("hours", { n: num(backlogHours, 1) }), t("backlog_votes", { n: num(now.backlog_votes ?? st?.capacity?.backlog_votes, 0) })),
      tile("pace", t("pace"), num(pace, 0), t("votes_per_hour")),
      st ? tile("open_escalations", t("open_escalations"), num(st.escalations?.open, 0), t("open_tasks", { n: num(st.tasks?.open, 0) })) : null,
    );
  }

  function drawSeries(d) {
    const buckets = Array.isArray(d.buckets) ? d.buckets : [];
    const bucket = ago(d.bucket_secs);
    timeChart(hosts.backlog, { name: "backlog", title: t("chart_backlog"), buckets, series: [{ key: "backlog_hours", label: t("backlog_hours"), kind: "line" }], unit: "h" });
    timeChart(hosts.throughput, { name: "throughput", title: t("chart_throughput", { b: bucket }), buckets, series: [{ key: "votes", label: t("votes"), kind: "bar" }], digits: 0 });
    timeChart(hosts.decisions, {
      name: "decisions",
      title: t("chart_decisions", { b: bucket }),
      buckets,
      series: [
        { key: "decisions", label: t("decisions"), kind: "bar" },
        { key: "escalations", label: t("escalations"), kind: "bar" },
      ],
      digits: 0,
    });
  }

  function drawPrevalence(p) {
    const strata = Object.entries(p.strata ?? {}).map(([label, e]) => ({ label, value: e.share ?? null, low: e.ci_low ?? null, high: e.ci_high ?? null, note: t("found_of", { found: e.counterfeit_found ?? 0, n: e.decided ?? 0 }) }));
    strata.sort((a, b) => (b.value ?? -1) - (a.value ?? -1) || a.label.localeCompare(b.label));
    const o = p.overall;
    const rows = o ? [{ label: t("overall"), value: o.share ?? null, low: o.ci_low ?? null, high: o.ci_high ?? null, note: t("found_of", { found: o.counterfeit_found ?? 0, n: o.decided ?? 0 }) }, ...strata] : strata;
    intervalChart(hosts.prevalence, { name: "prevalence", title: t("chart_prevalence", { round: p.round ?? "—" }), rows });
    prevNote.textContent = p.round == null ? t("no_round") : t("prevalence_note", { pending: p.strata_pending ?? 0 });
  }

  select.addEventListener("change", () => {
    windowSecs = Number(select.value);
    localStorage.setItem(KEY, String(windowSecs));
    load();
  });
  load().catch((e) => {
    status.textContent = explain(e);
  });
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
