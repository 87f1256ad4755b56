// The app's shell: sign-in, the header with the volunteer's figures (votes,
// today's count against the quota, the streak), the language switch, notices,
// and the routes (#/review for volunteers; #/escalations, #/cases, #/rules,
// #/dashboard, #/volunteers and #/users for staff and admins).

import { api, login, resume, signOut } from "./api.js";
import { h, show } from "./dom.js";
import { t, explain, toggleLang } from "./i18n.js";
import { reviewView } from "./review.js";
import { escalationsView, escalationView, casesView, caseView } from "./staff.js";
import { rulesView } from "./rules.js";
import { dashboardView } from "./dashboard.js";
import { volunteersView, volunteerView } from "./volunteers.js";
import { usersView } from "./users.js";

const bar = document.getElementById("bar");
const main = document.getElementById("main");
const notice = document.getElementById("notice");
let me = null;
let leave = null;
let noticeTimer = null;

const isStaff = () => me && (me.role === "staff" || me.role === "admin");

/** Shows a short message under the header. */
function notify(message, kind = "info") {
  notice.textContent = message;
  notice.className = `notice ${kind}`;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, 5000);
}

const ctx = {
  get me() {
    return me;
  },
  notify,
  /** `n` more votes were recorded: the figures in the header follow. */
  counted(n) {
    if (me?.counts) me.counts.votes = (me.counts.votes ?? 0) + n;
    if (me?.today) {
      me.today.votes = (me.today.votes ?? 0) + n;
      if (typeof me.today.quota_left === "number") me.today.quota_left = Math.max(0, me.today.quota_left - n);
    }
    header();
  },
};

function header() {
  const nav = [];
  if (me?.role === "volunteer") nav.push(["#/review", t("review")]);
  if (isStaff()) {
    nav.push(["#/escalations", t("escalations")], ["#/cases", t("cases")], ["#/rules", t("rules")], ["#/dashboard", t("dashboard")], ["#/volunteers", t("volunteers")], ["#/users", t("users")]);
  }
  const here = location.hash.split("/").slice(0, 2).join("/");
  show(
    bar,
    h("a", { class: "brand", href: "#/" }, h("img", { src: "/app/icon.svg", alt: "", width: "22", height: "22" }), t("app")),
    nav.length
      ? h("nav", {}, nav.map(([href, label]) => h("a", { href, "aria-current": here === href ? "page" : null, text: label })))
      : null,
    h(
      "div",
      { class: "who" },
      me?.role === "volunteer" ? h("span", { class: "figures", "data-votes": me.counts?.votes ?? 0, text: t("votes_total", { n: me.counts?.votes ?? 0 }) }) : null,
      me?.role === "volunteer" ? today() : null,
      me ? h("span", { class: "user", text: me.username }) : null,
      h("button", { type: "button", class: "link", "aria-label": t("switch_lang_label"), onclick: switchLang, text: t("switch_lang") }),
      me ? h("button", { type: "button", class: "link", onclick: logout, text: t("sign_out") }) : null,
    ),
  );
}

/** The volunteer's day: votes today (of the quota), what is left, the streak. */
function today() {
  const d = me.today;
  const parts = [];
  if (d && typeof d.votes === "number") {
    parts.push(typeof d.quota === "number" ? t("today_of", { n: d.votes, q: d.quota }) : t("today_n", { n: d.votes }));
    if (typeof d.quota_left === "number") parts.push(t("quota_left", { n: d.quota_left }));
  }
  if (typeof me.streak_days === "number") parts.push(t("streak", { n: me.streak_days }));
  if (!parts.length) return null;
  return h("span", { class: "today", "data-today": d?.votes ?? "", "data-quota-left": d?.quota_left ?? "", "data-streak": me.streak_days ?? "", text: parts.join(" · ") });
}

/** Goes to `hash`; the hashchange event routes, or this does when it is already there. */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function switchLang() {
  toggleLang();
  route();
}

function logout() {
  leave?.();
  leave = null;
  signOut();
  me = null;
  go("#/");
}

function loginView() {
  const error = h("p", { class: "problem", role: "alert", hidden: true });
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit", class: "primary", text: t("sign_in") });
  const form = h(
    "form",
    { class: "login" },
    h("h1", { text: t("app") }),
    h("label", { for: "username", text: t("username") }),
    user,
    h("label", { for: "password", text: t("password") }),
    pass,
    error,
    button,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.hidden = true;
    try {
      await login(user.value.trim(), pass.value);
      await loadMe();
      go(home());
    } catch (err) {
      error.textContent = explain(err);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  show(main, form);
  user.focus();
}

async function loadMe() {
  me = await api("GET", "/v1/me");
}

function home() {
  if (me?.role === "volunteer") return "#/review";
  if (isStaff()) return "#/escalations";
  return "#/";
}

/** Shows the page the address names. */
function route() {
  leave?.();
  leave = null;
  header();
  if (!me) return loginView();
  const [, page, id] = location.hash.split("/");
  const staffCtx = { ...ctx, me, root: main };
  if (me.role === "volunteer" && page === "review") {
    leave = reviewView(main, ctx);
  } else if (isStaff() && page === "escalations") {
    leave = id ? escalationView(main, staffCtx, decodeURIComponent(id)) : escalationsView(main, staffCtx);
  } else if (isStaff() && page === "cases") {
    leave = id ? caseView(main, staffCtx, decodeURIComponent(id)) : casesView(main, staffCtx);
  } else if (isStaff() && page === "rules") {
    leave = rulesView(main, staffCtx);
  } else if (isStaff() && page === "dashboard") {
    leave = dashboardView(main, staffCtx);
  } else if (isStaff() && page === "volunteers") {
    leave = id ? volunteerView(main, staffCtx, decodeURIComponent(id)) : volunteersView(main, staffCtx);
  } else if (isStaff() && page === "users") {
    leave = usersView(main, staffCtx);
  } else if (home() !== "#/") {
    location.replace(home());
    return;
  } else {
    show(main, h("p", { class: "problem", text: t("not_for_role", { role: me.role }) }));
  }
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);

(async () => {
  if (await resume()) {
    try {
      await loadMe();
    } catch {
      me = null;
    }
  }
  route();
})();
