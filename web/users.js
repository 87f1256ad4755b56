// The users page (#/users): accounts filtered by role, status and name;
// creating one (admins any role, staff the roles without staff powers; a
// seller account names its seller, a brand owner its brands); suspending and
// reinstating; and a volunteer's links to sellers (a conflict of interest:
// that seller's listings are never offered to them).

import { api } from "./api.js";
import { h, show, when } from "./dom.js";
import { t, explain } from "./i18n.js";
import { badge } from "./staff.js";

const ROLES = ["volunteer", "seller", "brand_owner", "staff", "admin"];
const SEARCH_DELAY_MS = 300;

/** `#/users`. */
export function usersView(root, ctx) {
  let alive = true;
  let cursor = null;
  let searchTimer = null;
  let serial = 0;
  const role = h("select", { id: "u-role" }, ["", ...ROLES].map((r) => h("option", { value: r, text: r ? t(`role_${r}`) : t("any") })));
  const status = h("select", { id: "u-status" }, ["", "active", "suspended"].map((s) => h("option", { value: s, text: s ? t(s) : t("any") })));
  const search = h("input", { id: "u-q", type: "search", autocapitalize: "none", spellcheck: "false", maxlength: "64" });
  const list = h("ul", { class: "queue users" });
  const line = h("p", { class: "muted", role: "status" });
  const more = h("button", { type: "button", class: "link", hidden: true, text: t("more") });

  /** The buttons and forms of one account. */
  function actions(u, li) {
    const result = h("span", { class: "result", role: "status" });
    const self = u.user_id === ctx.me.user_id;
    const out = [];
    if (!self) {
      const suspend = u.status === "suspended";
      out.push(
        h("button", {
          type: "button",
          class: suspend ? "secondary" : "danger",
          "data-action": suspend ? "reinstate" : "suspend",
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              const now = await api("POST", `/v1/staff/users/${encodeURIComponent(u.user_id)}/${suspend ? "reinstate" : "suspend"}`);
              u.status = now.status ?? (suspend ? "active" : "suspended");
              ctx.notify(t(suspend ? "user_reinstated" : "user_suspended", { who: u.username }), "good");
              li.replaceWith(item(u));
            } catch (err) {
              result.textContent = explain(err);
              e.target.disabled = false;
            }
          },
          text: t(suspend ? "reinstate" : "suspend"),
        }),
      );
    }
    if (u.role === "volunteer") {
      const seller = h("input", { id: `link-${u.user_id}`, maxlength: "128", autocapitalize: "none", spellcheck: "false" });
      const reason = h("input", { id: `reason-${u.user_id}`, maxlength: "500" });
      const form = h(
        "form",
        { class: "link-form", hidden: true },
        h("label", { for: `link-${u.user_id}`, text: t("seller_id") }),
        seller,
        h("label", { for: `reason-${u.user_id}`, text: t("link_reason") }),
        reason,
        h("button", { type: "submit", class: "secondary", text: t("record_link") }),
      );
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const body = { seller_id: seller.value.trim() };
        if (reason.value.trim()) body.reason = reason.value.trim();
        try {
          await api("POST", `/v1/staff/users/${encodeURIComponent(u.user_id)}/seller-links`, body);
          result.textContent = t("link_recorded", { seller: body.seller_id });
          form.hidden = true;
        } catch (err) {
          result.textContent = explain(err);
        }
      });
      out.push(h("button", { type: "button", class: "link", "aria-expanded": "false", onclick: (e) => { form.hidden = !form.hidden; e.target.setAttribute("aria-expanded", String(!form.hidden)); if (!form.hidden) seller.focus(); }, text: t("link_seller") }), form);
    }
    out.push(result);
    return h("div", { class: "user-actions" }, out);
  }

  function item(u) {
    const li = h("li", { class: "row user", "data-user": u.user_id, "data-username": u.username, "data-status": u.status });
    const parts = [
      h("strong", { text: u.username }),
      h("span", { class: "badge", text: t(`role_${u.role}`) === `role_${u.role}` ? u.role : t(`role_${u.role}`) }),
      badge(u.status),
      u.seller_id ? h("span", { class: "muted", text: `${t("seller")}: ${u.seller_id}` }) : null,
      h("span", { class: "muted", text: `${t("joined")}: ${when(u.created_at)}` }),
      u.role === "volunteer" ? h("a", { href: `#/volunteers/${encodeURIComponent(u.user_id)}`, text: t("quality") }) : null,
      actions(u, li),
    ];
    li.append(...parts.filter(Boolean));
    return li;
  }

  async function load(reset) {
    const mine = ++serial;
    if (reset) cursor = null;
    line.textContent = t("loading");
    const params = new URLSearchParams({ limit: "50" });
    if (role.value) params.set("role", role.value);
    if (status.value) params.set("status", status.value);
    if (search.value.trim()) params.set("q", search.value.trim());
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await api("GET", `/v1/staff/users?${params}`);
      if (!alive || mine !== serial) return;
      if (reset) list.replaceChildren();
      list.append(...(page.items ?? []).map(item));
      cursor = page.next_cursor ?? null;
      more.hidden = !cursor;
      line.textContent = list.children.length ? "" : t("empty_queue");
    } catch (e) {
      if (mine === serial) line.textContent = explain(e);
    }
  }

  show(
    root,
    h(
      "section",
      { class: "staff users-page" },
      h("h1", { text: t("users") }),
      createForm(ctx, () => load(true)),
      h("h2", { text: t("accounts") }),
      h(
        "div",
        { class: "filters" },
        h("div", { class: "field" }, h("label", { for: "u-role", text: t("role") }), role),
        h("div", { class: "field" }, h("label", { for: "u-status", text: t("status") }), status),
        h("div", { class: "field" }, h("label", { for: "u-q", text: t("search_name") }), search),
      ),
      line,
      list,
      more,
    ),
  );
  role.addEventListener("change", () => load(true));
  status.addEventListener("change", () => load(true));
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => load(true), SEARCH_DELAY_MS);
  });
  more.addEventListener("click", () => load(false));
  load(true);
  return () => {
    alive = false;
    clearTimeout(searchTimer);
  };
}

/** The form that creates an account; `created()` runs after one is made. */
function createForm(ctx, created) {
  const allowed = ctx.me.role === "admin" ? ROLES : ROLES.filter((r) => r !== "staff" && r !== "admin");
  const username = h("input", { id: "new-username", autocomplete: "off", autocapitalize: "none", spellcheck: "false", required: true, maxlength: "64" });
  const password = h("input", { id: "new-password", type: "password", autocomplete: "new-password", required: true });
  const role = h("select", { id: "new-role" }, allowed.map((r) => h("option", { value: r, text: t(`role_${r}`) })));
  const seller = h("input", { id: "new-seller", maxlength: "128", autocapitalize: "none", spellcheck: "false" });
  const brands = h("input", { id: "new-brands", maxlength: "600" });
  const sellerField = h("div", { class: "field", hidden: true }, h("label", { for: "new-seller", text: t("seller_id") }), seller);
  const brandField = h("div", { class: "field", hidden: true }, h("label", { for: "new-brands", text: t("brands_list") }), brands);
  const result = h("p", { class: "result", role: "status" });
  const button = h("button", { type: "submit", class: "primary", text: t("create_user") });
  const sync = () => {
    sellerField.hidden = role.value !== "seller";
    brandField.hidden = role.value !== "brand_owner";
  };
  role.addEventListener("change", sync);
  const form = h(
    "form",
    { class: "create-user card" },
    h("h2", { text: t("new_user") }),
    h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "new-username", text: t("username") }), username), h("div", { class: "field" }, h("label", { for: "new-password", text: t("password") }), password), h("div", { class: "field" }, h("label", { for: "new-role", text: t("role") }), role), sellerField, brandField),
    h("div", { class: "row-buttons" }, button, result),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { username: username.value.trim(), password: password.value, role: role.value };
    if (role.value === "seller") body.seller_id = seller.value.trim();
    if (role.value === "brand_owner") body.brands = brands.value.split(",").map((b) => b.trim()).filter(Boolean);
    button.disabled = true;
    try {
      const made = await api("POST", "/v1/staff/users", body);
      result.textContent = t("user_created", { who: body.username });
      result.dataset.created = made.user_id;
      form.reset();
      sync();
      created();
    } catch (err) {
      result.textContent = explain(err);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
