// The volunteer's page: claim a listing, judge it with one tap or one key,
// and get the next one at once. The lease is extended while the volunteer is
// active, with a warning before it ends; a vote made offline waits in the
// outbox until the connection returns.

import { api, ApiError, isOffline } from "./api.js";
import { h, show, clock } from "./dom.js";
import { t, explain } from "./i18n.js";
import { listingCard } from "./listing.js";
import * as outbox from "./outbox.js";

const REASONS = [
  "price_too_low",
  "logo_mismatch",
  "poor_photos",
  "packaging",
  "materials",
  "description_mismatch",
  "seller_history",
];
const KEYS = { g: "genuine", c: "counterfeit", u: "unsure" };
/** Input within this long counts as "active": the lease is extended for them. */
const ACTIVE_MS = 60_000;
/** The warning shows this long before the lease ends. */
const WARN_MS = 60_000;
/** How long to wait before looking again when there is nothing to review. */
const EMPTY_RETRY_S = 15;
/** Codes that mean this lease is over: move on to the next listing. */
const LEASE_OVER = ["task_closed", "already_voted", "lease_expired", "lease_released", "lease_not_found", "lease_token_mismatch"];

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const votePath = (taskId) => `/v1/tasks/${encodeURIComponent(taskId)}/votes`;

function voteBody(v) {
  const body = { lease_token: v.lease_token, verdict: v.verdict, reasons: v.reasons };
  if (v.note) body.note = v.note;
  return body;
}

/** Shows the review page in `root`; returns the function that leaves it. */
export function reviewView(root, ctx) {
  const user = ctx.me.user_id;
  let task = null;
  let total = 1;
  let busy = false;
  let extending = false;
  let lastActive = Date.now();
  let ticker = null;
  let retry = null;
  let claimKey = null;
  let alive = true;
  const reasons = new Set();
  let note = null;

  const leaseText = h("span", { class: "lease-time" });
  const leaseBar = h("progress", { max: "1", value: "1" });
  const lease = h("div", { class: "lease", role: "timer", "aria-live": "off" }, leaseText, leaseBar);
  const warn = h("p", { class: "warn", role: "alert", hidden: true });
  const queued = h("p", { class: "queued", hidden: true });
  const body = h("div", { class: "review-body" });
  show(root, h("section", { class: "review" }, queued, body));

  const activity = () => {
    lastActive = Date.now();
    if (task && !warn.hidden) extend(true);
  };
  const onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || !task) return;
    const tag = e.target?.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    const key = e.key.toLowerCase();
    if (key in KEYS) {
      e.preventDefault();
      vote(KEYS[key]);
    } else if (key === "s") {
      e.preventDefault();
      skip();
    }
  };
  const activityEvents = ["pointerdown", "keydown", "touchstart", "wheel", "input"];
  for (const name of activityEvents) window.addEventListener(name, activity, { capture: true, passive: true });
  window.addEventListener("keydown", onKey);
  window.addEventListener("online", onOnline);
  window.addEventListener("offline", onOffline);

  function stopTimers() {
    clearInterval(ticker);
    clearTimeout(retry);
    ticker = retry = null;
  }

  function showQueued() {
    const n = outbox.waiting(user);
    queued.hidden = n === 0;
    queued.textContent = t("queued_n", { n });
  }

  async function claimNext() {
    stopTimers();
    task = null;
    reasons.clear();
    showQueued();
    if (!alive) return;
    if (!navigator.onLine) return showOffline();
    show(body, h("p", { class: "muted", text: t("loading") }));
    claimKey ??= randomKey();
    try {
      const claimed = await api("POST", "/v1/tasks/claim", undefined, { "idempotency-key": claimKey });
      claimKey = null;
      if (!alive) {
        if (claimed) release(claimed);
        return;
      }
      if (claimed) showTask(claimed);
      else showEmpty();
    } catch (e) {
      if (!alive) return;
      if (isOffline(e)) return showOffline();
      claimKey = null;
      showProblem(e);
    }
  }

  function showEmpty() {
    show(
      body,
      h(
        "div",
        { class: "empty", "data-state": "empty" },
        h("h2", { text: t("nothing") }),
        h("p", { class: "muted", text: t("nothing_hint", { s: EMPTY_RETRY_S }) }),
        h("button", { type: "button", class: "primary", onclick: claimNext, text: t("retry") }),
      ),
    );
    retry = setTimeout(claimNext, EMPTY_RETRY_S * 1000);
  }

  function showOffline() {
    show(body, h("div", { class: "empty", "data-state": "offline" }, h("h2", { text: t("offline") })));
  }

  function showProblem(e) {
    show(
      body,
      h(
        "div",
        { class: "empty", "data-state": "problem" },
        h("p", { class: "problem", role: "alert", text: explain(e) }),
        h("button", { type: "button", class: "primary", onclick: claimNext, text: t("retry") }),
      ),
    );
    if (e.code === "rate_limited" || e.code === "claim_in_progress" || e.code === "busy") {
      retry = setTimeout(claimNext, (e.retryAfter ?? 5) * 1000);
    }
  }

  function showTask(claimed) {
    task = claimed;
    total = Math.max(Date.parse(task.lease_expires_at) - Date.now(), 1000);
    lastActive = Date.now();
    warn.hidden = true;
    const chips = REASONS.map((code) => {
      const chip = h("button", { type: "button", class: "chip", "aria-pressed": "false", "data-reason": code, text: t(`r_${code}`) });
      chip.addEventListener("click", () => {
        const on = !reasons.has(code);
        if (on) reasons.add(code);
        else reasons.delete(code);
        chip.setAttribute("aria-pressed", String(on));
      });
      return chip;
    });
    note = h("textarea", { id: "note", rows: "2", maxlength: "2000" });
    const verdicts = Object.entries(KEYS).map(([key, verdict]) =>
      h(
        "button",
        { type: "button", class: `verdict ${verdict}`, "data-verdict": verdict, "aria-keyshortcuts": key.toUpperCase(), onclick: () => vote(verdict) },
        h("span", { text: t(verdict) }),
        h("kbd", { text: key.toUpperCase() }),
      ),
    );
    show(
      body,
      h(
        "div",
        { class: "task", "data-task": task.task_id },
        lease,
        warn,
        listingCard(task.listing),
        h("fieldset", { class: "reasons" }, h("legend", { text: t("reasons") }), chips),
        h("label", { class: "note", for: "note" }, t("note")),
        note,
        h("div", { class: "actions" }, verdicts, h("button", { type: "button", class: "skip", onclick: skip, text: t("skip") })),
        h("p", { class: "hint", text: t("keys_hint") }),
      ),
    );
    ticker = setInterval(tick, 1000);
    tick();
  }

  function tick() {
    if (!task) return;
    const left = Date.parse(task.lease_expires_at) - Date.now();
    if (left <= 0) {
      ctx.notify(t("lease_lost"), "warn");
      claimNext();
      return;
    }
    leaseText.textContent = t("lease_left", { t: clock(left) });
    leaseBar.value = Math.min(1, left / total);
    lease.classList.toggle("low", left <= WARN_MS);
    if (Date.now() - lastActive < ACTIVE_MS) extend(false);
    warn.hidden = left > WARN_MS;
    if (!warn.hidden) warn.textContent = t("lease_warn", { t: clock(left) });
  }

  async function extend(now) {
    if (!task || extending || !navigator.onLine) return;
    const left = Date.parse(task.lease_expires_at) - Date.now();
    if (!now && left > Math.min(total / 2, 120_000)) return;
    extending = true;
    const current = task;
    try {
      const answer = await api("POST", `/v1/tasks/${encodeURIComponent(current.task_id)}/extend`, { lease_token: current.lease_token });
      if (task === current) {
        current.lease_expires_at = answer.lease_expires_at;
        total = Math.max(Date.parse(answer.lease_expires_at) - Date.now(), 1000);
        tick();
      }
    } catch (e) {
      if (task === current && LEASE_OVER.includes(e.code)) {
        ctx.notify(explain(e), "warn");
        claimNext();
      }
    } finally {
      extending = false;
    }
  }

  async function vote(verdict) {
    if (!task || busy) return;
    busy = true;
    const current = task;
    const text = note?.value.trim();
    const ballot = { task_id: current.task_id, lease_token: current.lease_token, lease_expires_at: current.lease_expires_at, verdict, reasons: [...reasons], note: text || undefined };
    body.querySelector(`[data-verdict="${verdict}"]`)?.classList.add("chosen");
    try {
      if (!navigator.onLine) throw new ApiError(0, "offline", "");
      const answer = await api("POST", votePath(current.task_id), voteBody(ballot));
      ctx.counted(1);
      const fb = answer?.feedback;
      if (fb) ctx.notify(t(fb.correct ? "gold_right" : "gold_wrong", { expected: t(fb.expected) }), fb.correct ? "good" : "warn");
      else ctx.notify(t("voted"), "good");
    } catch (e) {
      if (isOffline(e)) {
        outbox.enqueue(user, ballot);
        ctx.notify(t("queued"), "warn");
      } else if (LEASE_OVER.includes(e.code)) {
        ctx.notify(explain(e), "warn");
      } else if (e.code === "daily_quota_exceeded") {
        busy = false;
        stopTimers();
        task = null;
        return showProblem(e);
      } else {
        busy = false;
        body.querySelector(".chosen")?.classList.remove("chosen");
        ctx.notify(explain(e), "bad");
        return;
      }
    }
    busy = false;
    claimNext();
  }

  async function release(current) {
    try {
      await api("POST", `/v1/tasks/${encodeURIComponent(current.task_id)}/release`, { lease_token: current.lease_token });
      return true;
    } catch (e) {
      if (!isOffline(e) && !LEASE_OVER.includes(e.code)) ctx.notify(explain(e), "bad");
      return false;
    }
  }

  async function skip() {
    if (!task || busy) return;
    busy = true;
    const current = task;
    stopTimers();
    if (await release(current)) ctx.notify(t("skipped"));
    busy = false;
    claimNext();
  }

  async function sendQueued() {
    if (!outbox.waiting(user)) return;
    const result = await outbox.flush(user, (v) => api("POST", votePath(v.task_id), voteBody(v)));
    if (result.sent) {
      ctx.counted(result.sent);
      ctx.notify(t("sent_queued", { n: result.sent }), "good");
    }
    if (result.dropped) ctx.notify(t("dropped_queued", { n: result.dropped }), "warn");
    showQueued();
  }

  async function onOnline() {
    await sendQueued();
    if (alive && !task) claimNext();
  }

  function onOffline() {
    ctx.notify(t("offline"), "warn");
    showQueued();
  }

  (async () => {
    if (navigator.onLine) await sendQueued();
    claimNext();
  })();

  return () => {
    alive = false;
    stopTimers();
    for (const name of activityEvents) window.removeEventListener(name, activity, { capture: true });
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("online", onOnline);
    window.removeEventListener("offline", onOffline);
    if (task) release(task);
    task = null;
  };
}
