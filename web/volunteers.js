// The volunteers page (#/volunteers): volunteers the abuse rules stopped
// counting (or all of them), the groups flagged for voting together, and one
// volunteer's record (#/volunteers/{id}): accuracy, confusion, gold accuracy
// day by day as a chart, and reinstatement of their counting.

import { api } from "./api.js";
import { h, show, facts, when } from "./dom.js";
import { t, explain } from "./i18n.js";
import { timeChart } from "./chart.js";
import { badge, table } from "./staff.js";

const pct = (v) => (typeof v === "number" && Number.isFinite(v) ? `${Math.round(v * 100)}%` : "—");
const link = (id, text) => h("a", { href: `#/volunteers/${encodeURIComponent(id)}`, "data-volunteer": id, text });

/** One volunteer as a row of the list. */
function row(v) {
  return h(
    "li",
    {},
    h(
      "a",
      { href: `#/volunteers/${encodeURIComponent(v.user_id)}`, class: "row", "data-volunteer": v.user_id },
      h("strong", { text: v.username }),
      badge(v.status),
      v.counting ? null : h("span", { class: "badge stopped", text: t("not_counting") }),
      v.flag ? h("span", { class: "muted", text: `${t("flag")}: ${t(`f_${v.flag}`) === `f_${v.flag}` ? v.flag : t(`f_${v.flag}`)}` }) : null,
      h("span", { class: "muted", text: `${t("accuracy")}: ${pct(v.accuracy)}` }),
      h("span", { class: "muted", text: `${t("gold")}: ${v.gold?.correct ?? 0}/${v.gold?.answered ?? 0}` }),
      h("span", { class: "muted", text: `${t("votes")}: ${v.votes ?? 0}` }),
    ),
  );
}

/** `#/volunteers`: the list (flagged first by default) and the collusion groups. */
export function volunteersView(root) {
  let alive = true;
  let cursor = null;
  const saved = sessionStorage.getItem("spotcheck.filter.volunteers") ?? "true";
  const select = h("select", { id: "vfilter" }, [["true", t("stopped_counting")], ["", t("all_volunteers")]].map(([v, label]) => h("option", { value: v, selected: v === saved, text: label })));
  const list = h("ul", { class: "queue volunteers" });
  const status = h("p", { class: "muted", role: "status" });
  const more = h("button", { type: "button", class: "link", hidden: true, text: t("more") });
  const groupState = h("select", { id: "gfilter" }, ["open", "cleared"].map((s) => h("option", { value: s, text: t(`g_${s}`) })));
  const groups = h("ul", { class: "queue groups" });
  const groupStatus = h("p", { class: "muted", role: "status" });

  async function load(reset) {
    if (reset) {
      list.replaceChildren();
      cursor = null;
    }
    status.textContent = t("loading");
    const params = new URLSearchParams({ limit: "50" });
    if (select.value) params.set("flagged", select.value);
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await api("GET", `/v1/staff/volunteers?${params}`);
      if (!alive) return;
      list.append(...(page.items ?? []).map(row));
      cursor = page.next_cursor ?? null;
      more.hidden = !cursor;
      status.textContent = list.children.length ? "" : select.value ? t("none_stopped") : t("empty_queue");
    } catch (e) {
      status.textContent = explain(e);
    }
  }

  async function loadGroups() {
    groups.replaceChildren();
    groupStatus.textContent = t("loading");
    try {
      const page = await api("GET", `/v1/staff/collusion-flags?status=${encodeURIComponent(groupState.value)}`);
      if (!alive) return;
      groups.append(
        ...(page.items ?? []).map((g) =>
          h(
            "li",
            { class: "row group", "data-group": g.id },
            h("strong", { text: t("group_n", { n: g.id }) }),
            badge(g.status),
            h("span", { class: "muted", text: when(g.detected_at) }),
            h("span", { class: "members" }, (g.members ?? []).flatMap((m, i) => [i ? ", " : null, link(m.user_id, m.username)])),
          ),
        ),
      );
      groupStatus.textContent = groups.children.length ? "" : t("no_groups");
    } catch (e) {
      groupStatus.textContent = explain(e);
    }
  }

  select.addEventListener("change", () => {
    sessionStorage.setItem("spotcheck.filter.volunteers", select.value);
    load(true);
  });
  more.addEventListener("click", () => load(false));
  groupState.addEventListener("change", loadGroups);
  show(
    root,
    h(
      "section",
      { class: "staff volunteers-page" },
      h("h1", { text: t("volunteers") }),
      h("div", { class: "filter" }, h("label", { for: "vfilter", text: t("show") }), select),
      status,
      list,
      more,
      h("h2", { text: t("collusion_groups") }),
      h("p", { class: "muted", text: t("collusion_hint") }),
      h("div", { class: "filter" }, h("label", { for: "gfilter", text: t("status") }), groupState),
      groupStatus,
      groups,
    ),
  );
  load(true);
  loadGroups();
  return () => {
    alive = false;
  };
}

/** `#/volunteers/{id}`: one volunteer's record and reinstatement. */
export function volunteerView(root, ctx, id) {
  let alive = true;
  const path = `/v1/staff/volunteers/${encodeURIComponent(id)}`;

  function draw(v) {
    const chartHost = h("div", { class: "chart-host" });
    const result = h("p", { class: "result", role: "status" });
    const reinstate = v.counting
      ? null
      : h("button", {
          type: "button",
          class: "primary",
          "data-action": "reinstate-counting",
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              const now = await api("POST", `${path}/reinstate-counting`);
              ctx.notify(t("reinstated_counting", { who: v.username }), "good");
              draw(now);
            } catch (err) {
              result.textContent = explain(err);
              e.target.disabled = false;
            }
          },
          text: t("reinstate_counting"),
        });
    const c = v.confusion ?? {};
    show(
      root,
      h(
        "section",
        { class: "staff detail", "data-counting": String(v.counting) },
        h("a", { href: "#/volunteers", class: "back", text: `← ${t("volunteers")}` }),
        h("h1", {}, `${v.username} `, badge(v.status), v.counting ? null : h("span", { class: "badge stopped", text: t("not_counting") })),
        facts([
          [t("counting"), v.counting ? t("yes") : t("no")],
          [t("flag"), v.flag],
          [t("flagged_at"), v.flagged_at ? when(v.flagged_at) : null],
          [t("votes"), v.votes],
          [t("accuracy"), pct(v.accuracy)],
          [t("known_truth"), v.answers_with_known_truth],
          [t("gold"), `${v.gold?.correct ?? 0}/${v.gold?.answered ?? 0}`],
          [t("recent_fast"), `${v.recent_fast_votes ?? 0}/${v.recent_votes ?? 0}`],
          [t("recalibrated"), v.recalibrated ? when(v.recalibrated.at ?? v.recalibrated) : null],
        ]),
        reinstate ? h("div", { class: "holdbox" }, reinstate, result) : result,
        h(
          "div",
          { class: "columns" },
          h("div", {}, h("h2", { text: t("gold_over_time") }), chartHost),
          h(
            "div",
            {},
            h("h2", { text: t("confusion") }),
            table(
              [t("truth"), t("genuine"), t("counterfeit"), t("unsure")],
              ["genuine", "counterfeit"].map((truth) => [t(truth), pct(c[truth]?.genuine), pct(c[truth]?.counterfeit), pct(c[truth]?.unsure)]),
            ),
          ),
        ),
      ),
    );
    const history = Array.isArray(v.gold_history) ? v.gold_history : [];
    if (!history.length) {
      chartHost.append(h("p", { class: "muted", text: t("no_gold_history") }));
      return;
    }
    // Noon UTC, so the day reads the same in every time zone of the program.
    const buckets = history.map((d) => ({ at: `${d.day}T12:00:00Z`, accuracy: d.answered ? (100 * d.correct) / d.answered : null }));
    timeChart(chartHost, { name: "gold", title: t("chart_gold", { who: v.username }), buckets, series: [{ key: "accuracy", label: t("gold_accuracy_pct"), kind: "line" }], unit: "%", digits: 0, dates: true });
  }

  show(root, h("p", { class: "muted", text: t("loading") }));
  api("GET", path)
    .then((v) => alive && draw(v))
    .catch((e) => alive && show(root, h("p", { class: "problem", role: "alert", text: explain(e) })));
  return () => {
    alive = false;
  };
}
