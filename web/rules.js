// The sampling rules editor (#/rules): the default and floor rates, the strata
// rules and the signal boosts, checked as they are typed (here, then by the
// server's dry run, whose refusal is shown beside the field it names); the dry
// run's expected tasks and volunteer-hours per stratum, in force against
// proposed, before the rules can be saved; and every earlier version with who
// changed what.

import { api } from "./api.js";
import { h, show, when } from "./dom.js";
import { t, explain } from "./i18n.js";
import { num } from "./chart.js";
import { FIELDS, check, body, draftOf, changes } from "./policy.js";

const DRY_RUN_DELAY_MS = 400;

/** A number input's value, or NaN when empty. */
const numberOf = (text) => (String(text).trim() === "" ? NaN : Number(text));
const textOf = (text) => (String(text).trim() === "" ? null : String(text).trim());

/** A signed change, e.g. "+1.5". */
const delta = (a, b) => {
  const d = (b ?? 0) - (a ?? 0);
  return `${d > 0 ? "+" : d < 0 ? "−" : "±"}${num(Math.abs(d), 2)}`;
};

/** The dry run's table: per stratum, tasks and hours in force → proposed. */
function dryRunTable(run) {
  const inForce = run.in_force ?? {};
  const proposed = run.proposed ?? {};
  const strata = [...new Set([...Object.keys(inForce.strata ?? {}), ...Object.keys(proposed.strata ?? {})])].sort();
  const row = (label, a = {}, b = {}, head = false) =>
    h(
      "tr",
      head ? { class: "total" } : { "data-stratum": label },
      h("th", { scope: "row", text: label }),
      h("td", { text: num(b.listings ?? a.listings, 0) }),
      h("td", { text: `${num(a.expected_tasks, 1)} → ${num(b.expected_tasks, 1)}` }),
      h("td", { class: "delta", text: delta(a.expected_tasks, b.expected_tasks) }),
      h("td", { text: `${num(a.volunteer_hours, 2)} → ${num(b.volunteer_hours, 2)}` }),
      h("td", { class: "delta", text: delta(a.volunteer_hours, b.volunteer_hours) }),
    );
  return h(
    "div",
    { class: "scroll", tabindex: "0" },
    h(
      "table",
      { class: "dry-table" },
      h("caption", { text: t("dry_caption", { votes: num(run.votes_per_task, 1), secs: num(run.vote_seconds, 0) }) }),
      h("thead", {}, h("tr", {}, [t("stratum"), t("listings"), t("tasks_per_round"), "Δ", t("volunteer_hours"), "Δ"].map((x) => h("th", { scope: "col", text: x })))),
      h("tbody", {}, strata.map((k) => row(k, inForce.strata?.[k], proposed.strata?.[k])), row(t("total"), inForce, proposed, true)),
    ),
  );
}

/** `#/rules`: the editor, the dry run, and the history. */
export function rulesView(root, ctx) {
  let alive = true;
  let draft = null;
  let version = null;
  let serverProblem = null;
  let dryTimer = null;
  let dryFor = null;
  let runSerial = 0;
  const errors = new Map();
  const form = h("form", { class: "rules-form", novalidate: true });
  const dry = h("section", { class: "dryrun card", "aria-live": "polite", "data-state": "idle" });
  const save = h("button", { type: "submit", class: "primary", "data-action": "save", disabled: true, text: t("save_rules") });
  const saved = h("p", { class: "result", role: "status" });
  const history = h("ol", { class: "history" });
  const more = h("button", { type: "button", class: "link", hidden: true, text: t("more") });
  let before = null;

  /** An input for `field` whose problem is shown in a line beside it. */
  function field(id, label, input, path) {
    const err = h("span", { class: "field-error", id: `${id}-err`, "data-error-for": path });
    errors.set(path, { input, err });
    input.id = id;
    input.setAttribute("aria-describedby", `${id}-err`);
    input.dataset.field = path;
    return h("div", { class: "field" }, h("label", { for: id, text: label }), input, err);
  }

  const rateInput = (value, onValue, max = "1", step = "0.001") => {
    const input = h("input", { type: "number", inputmode: "decimal", min: "0", max, step, value: Number.isFinite(value) ? String(value) : "" });
    input.addEventListener("input", () => {
      onValue(numberOf(input.value));
      changed();
    });
    return input;
  };
  const textInput = (value, onValue, placeholder) => {
    const input = h("input", { type: "text", maxlength: "80", value: value ?? "", placeholder, autocapitalize: "none", spellcheck: "false" });
    input.addEventListener("input", () => {
      onValue(textOf(input.value));
      changed();
    });
    return input;
  };

  function render() {
    errors.clear();
    const rules = draft.rules.map((r, i) =>
      h(
        "fieldset",
        { class: "rule", "data-rule": i },
        h("legend", { text: t("rule_n", { n: i + 1 }) }),
        h("span", { class: "field-error", id: `rule-${i}-err`, "data-error-for": `rules[${i}]` }),
        FIELDS.map((f) => field(`rule-${i}-${f}`, t(`rf_${f}`), textInput(r[f], (v) => (r[f] = v), t("any_value")), `rules[${i}].${f}`)),
        field(`rule-${i}-rate`, t("rate"), rateInput(r.rate, (v) => (r.rate = v)), `rules[${i}].rate`),
        h("button", { type: "button", class: "link remove", "data-remove-rule": i, onclick: () => { draft.rules.splice(i, 1); render(); changed(); }, text: t("remove") }),
      ),
    );
    draft.rules.forEach((_, i) => errors.set(`rules[${i}]`, { input: null, err: rules[i].querySelector(`#rule-${i}-err`) }));
    const boosts = draft.boosts.map((b, i) =>
      h(
        "div",
        { class: "boost", "data-boost": i },
        field(`boost-${i}-name`, t("signal"), textInput(b.name, (v) => (b.name = v ?? ""), "brand_complaint"), `boosts[${i}].name`),
        field(`boost-${i}-factor`, t("factor"), rateInput(b.factor, (v) => (b.factor = v), "1000", "0.1"), `boosts[${i}].factor`),
        h("button", { type: "button", class: "link remove", onclick: () => { draft.boosts.splice(i, 1); render(); changed(); }, text: t("remove") }),
      ),
    );
    show(form,
      h(
        "div",
        { class: "rates" },
        field("default-rate", t("default_rate"), rateInput(draft.default_rate, (v) => (draft.default_rate = v)), "default_rate"),
        field("floor-rate", t("floor_rate"), rateInput(draft.floor_rate, (v) => (draft.floor_rate = v)), "floor_rate"),
      ),
      h("h2", { text: t("strata_rules") }),
      h("p", { class: "muted", text: t("rules_hint") }),
      rules,
      h("button", { type: "button", class: "secondary", "data-action": "add-rule", onclick: () => { draft.rules.push({ category: null, region: null, seller_risk_tier: null, rate: NaN }); render(); changed(); form.querySelector(`#rule-${draft.rules.length - 1}-category`)?.focus(); }, text: t("add_rule") }),
      h("h2", { text: t("boosts") }),
      h("p", { class: "muted", text: t("boosts_hint") }),
      boosts,
      h("button", { type: "button", class: "secondary", "data-action": "add-boost", onclick: () => { draft.boosts.push({ name: "", factor: 2 }); render(); changed(); form.querySelector(`#boost-${draft.boosts.length - 1}-name`)?.focus(); }, text: t("add_boost") }),
      h("div", { class: "row-buttons save-row" }, save, saved),
    );
    showProblems();
  }

  /** Shows each field's problem (ours first, then the server's) beside it. */
  function showProblems() {
    const local = check(draft);
    const all = { ...local };
    if (serverProblem && !Object.keys(local).length) all[serverProblem.field] = serverProblem.reason;
    for (const [path, { input, err }] of errors) {
      const problem = all[path] ?? null;
      if (err) err.textContent = problem ?? "";
      if (input) input.setAttribute("aria-invalid", problem ? "true" : "false");
    }
    const stray = Object.keys(all).filter((p) => !errors.has(p));
    saved.textContent = stray.length ? stray.map((p) => `${p}: ${all[p]}`).join(" · ") : saved.dataset.kept ?? "";
    return Object.keys(all).length === 0;
  }

  function changed() {
    // A dry run still on its way answers for rules that are no longer the draft.
    runSerial += 1;
    serverProblem = null;
    delete saved.dataset.kept;
    save.disabled = true;
    dry.dataset.state = "stale";
    clearTimeout(dryTimer);
    if (showProblems()) dryTimer = setTimeout(dryRun, DRY_RUN_DELAY_MS);
    else show(dry, h("h2", { text: t("dry_run") }), h("p", { class: "muted", text: t("dry_fix_first") }));
  }

  async function dryRun() {
    const proposal = JSON.stringify(body(draft));
    const mine = ++runSerial;
    dry.dataset.state = "running";
    try {
      const run = await api("POST", "/v1/staff/sampling-rules/dry-run", JSON.parse(proposal));
      if (!alive || mine !== runSerial) return;
      dryFor = proposal;
      dry.dataset.state = "ready";
      show(dry, h("h2", { text: t("dry_run") }), h("p", { class: "muted", text: t("dry_hint") }), dryRunTable(run), run.proposed?.hours_at_current_pace != null ? h("p", { text: t("dry_pace", { h: num(run.proposed.hours_at_current_pace, 1), was: num(run.in_force?.hours_at_current_pace, 1) }) }) : null);
      save.disabled = false;
    } catch (e) {
      if (!alive || mine !== runSerial) return;
      dry.dataset.state = "refused";
      const m = /^([\w.[\]]+): (.*)$/.exec(e.body?.detail ?? "");
      serverProblem = m ? { field: m[1], reason: m[2] } : { field: "_", reason: explain(e) };
      showProblems();
      show(dry, h("h2", { text: t("dry_run") }), h("p", { class: "problem", role: "alert", text: m ? `${m[1]}: ${m[2]}` : explain(e) }));
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const proposal = JSON.stringify(body(draft));
    if (!showProblems() || proposal !== dryFor) return;
    save.disabled = true;
    try {
      const doc = await api("PUT", "/v1/staff/sampling-rules", JSON.parse(proposal));
      version = doc.version ?? null;
      root.querySelector(".rules")?.setAttribute("data-version", String(version));
      saved.dataset.kept = t("saved_version", { v: version });
      saved.textContent = saved.dataset.kept;
      ctx.notify(saved.dataset.kept, "good");
      loadHistory(true);
    } catch (err) {
      const m = /^([\w.[\]]+): (.*)$/.exec(err.body?.detail ?? "");
      serverProblem = m ? { field: m[1], reason: m[2] } : null;
      showProblems();
      saved.textContent = m ? `${m[1]}: ${m[2]}` : explain(err);
      save.disabled = false;
    }
  });

  async function loadHistory(reset) {
    if (reset) {
      history.replaceChildren();
      before = null;
    }
    try {
      const page = await api("GET", `/v1/staff/sampling-rules/history?limit=20${before ? `&before=${before}` : ""}`);
      if (!alive) return;
      history.append(
        ...(page.items ?? []).map((v) =>
          h(
            "li",
            { class: "version card", "data-version": v.version },
            h("p", {}, h("strong", { text: t("version_n", { v: v.version }) }), " ", h("span", { class: "muted", text: `${when(v.changed_at)} · ${v.changed_by?.username ?? t("system")}` })),
            h("ul", { class: "changes" }, changes(v.old, v.new).map((line) => h("li", { text: line }))),
            h("button", { type: "button", class: "link", onclick: () => { draft = draftOf(v.new); render(); changed(); form.scrollIntoView?.({ block: "start" }); }, text: t("use_as_draft") }),
          ),
        ),
      );
      before = page.next_before ?? null;
      more.hidden = !before;
    } catch (e) {
      history.append(h("li", { class: "problem", text: explain(e) }));
    }
  }
  more.addEventListener("click", () => loadHistory(false));

  show(root, h("p", { class: "muted", text: t("loading") }));
  (async () => {
    try {
      const doc = await api("GET", "/v1/staff/sampling-rules");
      if (!alive) return;
      version = doc.version ?? null;
      draft = draftOf(doc);
      show(
        root,
        h(
          "section",
          { class: "staff rules", "data-version": version },
          h("h1", { text: t("rules") }),
          h("p", { class: "muted", text: t("rules_in_force", { v: version ?? "—", t: when(doc.updated_at) }) }),
          h("div", { class: "columns" }, form, h("div", {}, dry, h("h2", { text: t("history") }), history, more)),
        ),
      );
      render();
      show(dry, h("h2", { text: t("dry_run") }), h("p", { class: "muted", text: t("dry_idle") }));
      loadHistory(true);
    } catch (e) {
      if (alive) show(root, h("p", { class: "problem", role: "alert", text: explain(e) }));
    }
  })();
  return () => {
    alive = false;
    clearTimeout(dryTimer);
  };
}
