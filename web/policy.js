// The sampling rules as the editor holds them: a draft of a rules document,
// its problems field by field (the server's checks mirrored, so they show as
// the staff member types), the PUT body it makes, and what changed between
// two versions in words.

import { t } from "./i18n.js";
import { num } from "./chart.js";

export const FIELDS = ["category", "region", "seller_risk_tier"];

/** The problems of `draft` as {field: reason}, the server's rules mirrored. */
export function check(draft) {
  const out = {};
  const rate = (field, v) => {
    if (!(typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= 1)) out[field] = t("v_rate");
  };
  rate("default_rate", draft.default_rate);
  rate("floor_rate", draft.floor_rate);
  const seen = new Set();
  draft.rules.forEach((r, i) => {
    rate(`rules[${i}].rate`, r.rate);
    for (const f of FIELDS) if (r[f] != null && r[f].length > 64) out[`rules[${i}].${f}`] = t("v_length");
    if (!FIELDS.some((f) => r[f] != null)) out[`rules[${i}]`] = t("v_rule_empty");
    const key = JSON.stringify(FIELDS.map((f) => r[f] ?? null));
    if (seen.has(key) && !out[`rules[${i}]`]) out[`rules[${i}]`] = t("v_rule_duplicate");
    seen.add(key);
  });
  const names = new Set();
  draft.boosts.forEach((b, i) => {
    if (!b.name || b.name.length > 64) out[`boosts[${i}].name`] = t("v_length");
    else if (names.has(b.name)) out[`boosts[${i}].name`] = t("v_boost_duplicate");
    names.add(b.name);
    if (!(typeof b.factor === "number" && Number.isFinite(b.factor) && b.factor > 0 && b.factor <= 1000)) out[`boosts[${i}].factor`] = t("v_factor");
  });
  return out;
}

/** The PUT body of `draft`: unset strata fields left out, boosts as a map. */
export function body(draft) {
  return {
    default_rate: draft.default_rate,
    floor_rate: draft.floor_rate,
    rules: draft.rules.map((r) => {
      const rule = {};
      for (const f of FIELDS) if (r[f] != null) rule[f] = r[f];
      rule.rate = r.rate;
      return rule;
    }),
    boosts: Object.fromEntries(draft.boosts.map((b) => [b.name, b.factor])),
  };
}

/** The editor's draft of a rules document (as GET answers it). */
export function draftOf(doc) {
  return {
    default_rate: Number(doc?.default_rate ?? 0),
    floor_rate: Number(doc?.floor_rate ?? 0),
    rules: (doc?.rules ?? []).map((r) => ({ category: r.category ?? null, region: r.region ?? null, seller_risk_tier: r.seller_risk_tier ?? null, rate: Number(r.rate) })),
    boosts: Object.entries(doc?.boosts ?? {}).map(([name, factor]) => ({ name, factor: Number(factor) })),
  };
}


/** What changed from `old` to `now` (two rules documents), as lines of text. */
export function changes(old, now) {
  if (!old) return [t("ch_first")];
  const lines = [];
  for (const f of ["default_rate", "floor_rate"]) {
    if ((old[f] ?? 0) !== (now[f] ?? 0)) lines.push(t("ch_value", { what: t(f), from: num(old[f] ?? 0, 4), to: num(now[f] ?? 0, 4) }));
  }
  const key = (r) => FIELDS.map((f) => r[f] ?? "*").join(" / ");
  const before = new Map((old.rules ?? []).map((r) => [key(r), r.rate]));
  const after = new Map((now.rules ?? []).map((r) => [key(r), r.rate]));
  for (const [k, rate] of after) {
    if (!before.has(k)) lines.push(t("ch_rule_added", { rule: k, rate: num(rate, 4) }));
    else if (before.get(k) !== rate) lines.push(t("ch_rule_rate", { rule: k, from: num(before.get(k), 4), to: num(rate, 4) }));
  }
  for (const k of before.keys()) if (!after.has(k)) lines.push(t("ch_rule_removed", { rule: k }));
  const ob = old.boosts ?? {};
  const nb = now.boosts ?? {};
  for (const [name, f] of Object.entries(nb)) {
    if (!(name in ob)) lines.push(t("ch_boost_added", { name, f: num(f, 3) }));
    else if (ob[name] !== f) lines.push(t("ch_boost", { name, from: num(ob[name], 3), to: num(f, 3) }));
  }
  for (const name of Object.keys(ob)) if (!(name in nb)) lines.push(t("ch_boost_removed", { name }));
  return lines.length ? lines : [t("ch_none")];
}
