// The app's shell: sign-in, the header with the volunteer's figures, the
// language switch, notices, and the routes (#/review for volunteers,
// #/escalations and #/cases for staff and admins).

import { api, login, resume, signOut } from "./api.js";
import { h, show } from "./dom.js";
import { t, explain, toggleLang } from "./i18n.js";
import { reviewView } from "./review.js";
import { escalationsView, escalationView, casesView, caseView } from "./staff.js";

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
    header();
  },
};

function header() {
  const nav = [];
  if (me?.role === "volunteer") nav.push(["#/review", t("review")]);
  if (isStaff()) nav.push(["#/escalations", t("escalations")], ["#/cases", t("cases")]);
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
      me ? h("span", { class: "user", text: me.username }) : null,
      h("button", { type: "button", class: "link", "aria-label": t("switch_lang_label"), onclick: switchLang, text: t("switch_lang") }),
      me ? h("button", { type: "button", class: "link", onclick: logout, text: t("sign_out") }) : null,
    ),
  );
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
