// The staff console: the escalation queue with its evidence, exclusive review
// and the confirm-or-dismiss decision; the case list with a case's evidence,
// refutation, penalties and history, and the refutation decision.

import { api } from "./api.js";
import { h, show, facts, fmt, when, safeUrl } from "./dom.js";
import { t, explain } from "./i18n.js";
import { listingCard } from "./listing.js";

/** A share in [0, 1] as a percentage, or a dash when unknown. */
const percent = (v) => (typeof v === "number" && Number.isFinite(v) ? `${Math.round(v * 100)}%` : "—");
const short = (id) => String(id ?? "").slice(0, 8);
const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();

/** A state as a coloured label. */
export function badge(state) {
  return h("span", { class: `badge ${String(state)}`, text: t(state) === state ? String(state) : t(state) });
}

/** The words for a refusal; `held_by_another` names the holder and until when. */
function refusal(e) {
  if (e.code === "held_by_another" && e.body?.reviewer) {
    return t("held_by", { who: e.body.reviewer, t: when(e.body.review_until) });
  }
  return explain(e);
}

/**
 * A paged list at `path` (`{items, next_cursor}`), filtered by `field` among
 * `states`, each item drawn by `row`.
 */
function queue(root, ctx, { title, path, field, states, initial, row }) {
  let alive = true;
  const saved = sessionStorage.getItem(`spotcheck.filter.${path}`) ?? initial;
  const select = h("select", { id: "filter" }, ["", ...states].map((s) => h("option", { value: s, selected: s === saved, text: s ? t(s) : t("any") })));
  const list = h("ul", { class: "queue" });
  const more = h("button", { type: "button", class: "link", hidden: true, text: t("more") });
  const status = h("p", { class: "muted", role: "status" });
  let cursor = null;

  async function load(reset) {
    if (reset) {
      list.replaceChildren();
      cursor = null;
    }
    status.textContent = t("loading");
    try {
      const page = await api("GET", `${path}?${q({ [field]: select.value, limit: 50, cursor })}`);
      if (!alive) return;
      list.append(...page.items.map(row));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = list.children.length ? "" : t("empty_queue");
    } catch (e) {
      status.textContent = explain(e);
    }
  }
  select.addEventListener("change", () => {
    sessionStorage.setItem(`spotcheck.filter.${path}`, select.value);
    load(true);
  });
  more.addEventListener("click", () => load(false));
  show(
    root,
    h("section", { class: "staff" }, h("h1", { text: title }), h("label", { class: "filter", for: "filter" }, t("status"), select), status, list, more),
  );
  load(true);
  return () => {
    alive = false;
  };
}

/** `#/escalations`: the queue, oldest first. */
export function escalationsView(root, ctx) {
  return queue(root, ctx, {
    title: t("escalations"),
    path: "/v1/staff/escalations",
    field: "status",
    states: ["open", "confirmed", "dismissed"],
    initial: "open",
    row: (e) =>
      h(
        "li",
        {},
        h(
          "a",
          { href: `#/escalations/${encodeURIComponent(e.id)}`, class: "row", "data-escalation": e.id },
          h("strong", { text: e.listing_id }),
          badge(e.status),
          h("span", { class: "muted", text: `${t("reason")}: ${e.reason ?? "—"}` }),
          h("span", { class: "muted", text: when(e.created_at) }),
          e.reviewer ? h("span", { class: "muted", text: `${t("reviewer")}: ${short(e.reviewer)}` }) : null,
        ),
      ),
  });
}

/** `#/cases`: the case list, oldest first. */
export function casesView(root, ctx) {
  return queue(root, ctx, {
    title: t("cases"),
    path: "/v1/staff/cases",
    field: "state",
    states: ["notified", "refuted", "upheld", "rejected", "expired", "enforced"],
    initial: "",
    row: (c) =>
      h(
        "li",
        {},
        h(
          "a",
          { href: `#/cases/${encodeURIComponent(c.case_id)}`, class: "row", "data-case": c.case_id },
          h("strong", { text: `${t("seller")}: ${c.seller_id}` }),
          badge(c.state),
          h("span", { class: "muted", text: c.listing_id ?? "" }),
          h("span", { class: "muted", text: `${t("deadline")}: ${when(c.deadline)}` }),
        ),
      ),
  });
}

/** The "take for review" control of `path` (an escalation's or a case's). */
function holdBox(path, item, ctx) {
  const line = h("p", { class: "hold", role: "status" });
  const mine = item.reviewer && item.reviewer === ctx.me.user_id && Date.parse(item.review_until) > Date.now();
  if (item.reviewer && Date.parse(item.review_until) > Date.now()) {
    line.textContent = mine ? t("holding", { t: when(item.review_until) }) : t("held_by", { who: item.reviewer, t: when(item.review_until) });
  }
  const button = h("button", { type: "button", class: "secondary", "data-action": "review", text: t("take_review") });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const held = await api("POST", `${path}/review`);
      line.textContent = t("holding", { t: when(held?.review_until) });
    } catch (e) {
      line.textContent = refusal(e);
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "holdbox" }, button, line);
}

/** A decision form: a note and one button per `[decision, label]`. */
function decisionForm(title, choices, decide) {
  const note = h("textarea", { id: "decision-note", rows: "3", maxlength: "4000" });
  const result = h("p", { class: "result", role: "status" });
  const buttons = choices.map(([decision, label, kind]) => {
    const b = h("button", { type: "button", class: kind, "data-decision": decision, text: label });
    b.addEventListener("click", async () => {
      for (const other of buttons) other.disabled = true;
      try {
        await decide(decision, note.value.trim(), result);
      } catch (e) {
        result.textContent = refusal(e);
        for (const other of buttons) other.disabled = false;
      }
    });
    return b;
  });
  return h("section", { class: "decide" }, h("h2", { text: title }), h("label", { for: "decision-note", text: t("decision_note") }), note, h("div", { class: "row-buttons" }, buttons), result);
}

/** A table of `rows` under `headers`, or "None." when there are no rows. */
export function table(headers, rows) {
  if (!rows.length) return h("p", { class: "muted", text: t("none") });
  return h(
    "div",
    // Focusable, so a keyboard can scroll a table wider than the screen.
    { class: "scroll", tabindex: "0" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))), h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c instanceof Node ? c : fmt(c))))))),
  );
}

/** Loads `path` into `root`, drawing it with `draw`; returns the leave function. */
function detail(root, path, draw) {
  let alive = true;
  const reload = async () => {
    try {
      const item = await api("GET", path);
      if (alive) show(root, draw(item, reload));
    } catch (e) {
      if (alive) show(root, h("p", { class: "problem", role: "alert", text: explain(e) }));
    }
  };
  show(root, h("p", { class: "muted", text: t("loading") }));
  reload();
  return () => {
    alive = false;
  };
}

/** `#/escalations/{id}`: the evidence, exclusive review and the decision. */
export function escalationView(root, ctx, id) {
  const path = `/v1/staff/escalations/${encodeURIComponent(id)}`;
  // The decision's answer names the case it opened; the evidence view does not.
  let openedCase = null;
  return detail(root, path, (esc, reload) => {
    const caseId = esc.case_id ?? openedCase;
    const ev = esc.evidence ?? {};
    const task = ev.task ?? {};
    const decision = ev.decision ?? {};
    const votes = Array.isArray(ev.votes) ? ev.votes : [];
    const caseLink = (caseId) => h("a", { href: `#/cases/${encodeURIComponent(caseId)}`, class: "case-link", text: t("open_case", { id: short(caseId) }) });
    return h(
      "section",
      { class: "staff detail", "data-status": esc.status },
      h("a", { href: "#/escalations", class: "back", text: `← ${t("escalations")}` }),
      h("h1", {}, `${t("escalation")} ${short(esc.id)} `, badge(esc.status)),
      facts([
        [t("reason"), esc.reason],
        [t("created"), when(esc.created_at)],
        [t("decision_note"), esc.decision_note],
        [t("deadline"), esc.refutation_deadline ? when(esc.refutation_deadline) : null],
        [t("case"), caseId ? caseLink(caseId) : null],
      ]),
      esc.status === "open" ? holdBox(path, esc, ctx) : null,
      h("div", { class: "columns" }, ev.listing ? listingCard(ev.listing) : null, h("div", {},
        h("h2", { text: t("task") }),
        facts([
          [t("stratum"), task.stratum],
          [t("inclusion"), task.inclusion_probability],
          [t("state"), task.state],
          [t("votes"), task.votes_counted != null ? `${task.votes_counted} / ${task.votes_required}` : null],
          [t("decision"), decision.outcome],
          [t("posterior"), decision.posterior],
        ]),
        h("h2", { text: t("votes") }),
        table(
          [t("verdict"), t("reason"), t("note"), t("counts"), t("reliability"), t("created")],
          votes.map((v) => [t(v.verdict), (v.reasons ?? []).join(", "), v.note ?? "", v.volunteer_counts ? t("yes") : t("no"), percent(v.reliability), when(v.created_at)]),
        ),
      )),
      esc.status === "open"
        ? decisionForm(t("decision"), [["confirm", t("confirm"), "danger"], ["dismiss", t("dismiss"), "secondary"]], async (decision, note, result) => {
            const body = { decision };
            if (note) body.note = note;
            const answer = await api("POST", `${path}/decision`, body);
            openedCase = answer.case_id ?? null;
            ctx.notify(t("decided", { status: t(answer.status) }), "good");
            result.textContent = t("decided", { status: t(answer.status) });
            await reload();
          })
        : null,
    );
  });
}

/** `#/cases/{id}`: the case with evidence, refutation, penalties and history. */
export function caseView(root, ctx, id) {
  const path = `/v1/staff/cases/${encodeURIComponent(id)}`;
  return detail(root, path, (c, reload) => {
    const ev = c.evidence ?? {};
    const ref = c.refutation;
    const penalties = Array.isArray(c.penalties) ? c.penalties : [];
    const history = Array.isArray(c.history) ? c.history : [];
    const links = (urls) =>
      h("ul", { class: "links" }, (Array.isArray(urls) ? urls : []).map((u) => h("li", {}, safeUrl(u) ? h("a", { href: u, rel: "noopener noreferrer", target: "_blank", text: u }) : h("span", { text: u }))));
    return h(
      "section",
      { class: "staff detail", "data-state": c.state },
      h("a", { href: "#/cases", class: "back", text: `← ${t("cases")}` }),
      h("h1", {}, `${t("case")} ${short(c.case_id)} `, badge(c.state)),
      facts([
        [t("seller"), c.seller_id],
        [t("listing"), c.listing_id],
        [t("reason"), c.source],
        [t("created"), when(c.created_at)],
        [t("deadline"), when(c.deadline)],
        [t("staff_note"), ev.staff_note ?? c.note],
      ]),
      holdBox(path, c, ctx),
      h("div", { class: "columns" }, ev.listing ? listingCard(ev.listing) : null, h("div", {},
        h("h2", { text: t("refutation") }),
        ref ? h("div", { class: "refutation" }, h("p", { class: "prewrap", text: ref.text ?? "" }), links(ref.evidence_urls), h("p", { class: "muted", text: when(ref.submitted_at ?? ref.created_at) })) : h("p", { class: "muted", text: t("no_refutation") }),
        h("h2", { text: t("penalties") }),
        table([t("state"), t("created"), ""], penalties.map((p) => [p.kind, when(p.issued_at ?? p.created_at), p.lifted_at ? `lifted ${when(p.lifted_at)}` : p.until ? `→ ${when(p.until)}` : ""])),
        h("h2", { text: t("history") }),
        table([t("created"), t("decision"), t("reviewer")], history.map((r) => [when(r.at ?? r.created_at), r.action ?? "", short(r.actor ?? r.actor_id ?? "")])),
      )),
      c.state === "refuted"
        ? decisionForm(t("refutation_decision"), [["uphold", t("uphold"), "secondary"], ["reject", t("reject"), "danger"]], async (decision, note, result) => {
            const body = { decision };
            if (note) body.note = note;
            const answer = await api("POST", `${path}/refutation-decision`, body);
            ctx.notify(t("decided", { status: t(answer.state ?? decision) }), "good");
            result.textContent = t("decided", { status: t(answer.state ?? decision) });
            await reload();
          })
        : null,
    );
  });
}
