// A listing as the volunteer (or staff member) sees it. Every field is the
// seller's text: set as text, images only from https (or data:) addresses.

import { h, facts, safeUrl } from "./dom.js";
import { t } from "./i18n.js";

/** `value` in the listing's currency. */
function money(value, currency) {
  const amount = Number(value);
  if (value == null || !Number.isFinite(amount)) return String(value ?? "");
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD" }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${currency ?? ""}`;
  }
}

/** The price, beside the category's typical price when the server knows it. */
function price(listing) {
  const own = h("span", { class: "amount", text: money(listing.price, listing.currency) });
  const typical = Number(listing.typical_price);
  if (listing.typical_price == null || !Number.isFinite(typical) || typical <= 0) return h("p", { class: "price" }, own);
  const ratio = Number(listing.price) / typical;
  const below = Number.isFinite(ratio) && ratio < 1 ? Math.round((1 - ratio) * 100) : 0;
  return h(
    "p",
    { class: "price" },
    own,
    h("span", { class: "typical", "data-typical": typical, text: t("typical_price", { p: money(typical, listing.currency) }) }),
    below >= 30 ? h("span", { class: "below", text: t("below_typical", { n: below }) }) : null,
  );
}

/** Why the listing might be suspicious, as words (unknown codes as they are). */
function signals(list) {
  // A claim lists the names; a stored listing (staff evidence) maps each to whether it is present.
  const all = Array.isArray(list) ? list : list && typeof list === "object" ? Object.keys(list).filter((k) => list[k] === true) : [];
  const names = all.filter((s) => typeof s === "string" && s).slice(0, 16);
  if (!names.length) return null;
  return h(
    "div",
    { class: "signals" },
    h("span", { class: "signals-label", text: t("signals") }),
    h("ul", {}, names.map((s) => h("li", { class: "signal", "data-signal": s, text: t(`s_${s}`) === `s_${s}` ? s.replace(/_/g, " ") : t(`s_${s}`) }))),
  );
}

function photos(urls) {
  const usable = (Array.isArray(urls) ? urls : []).filter((u) => safeUrl(u, true)).slice(0, 8);
  if (!usable.length) return h("div", { class: "photos empty", text: t("no_photos") });
  // A named, focusable group: a keyboard can scroll photos wider than the screen.
  return h(
    "div",
    { class: "photos", role: "group", tabindex: "0", "aria-label": t("photos") },
    usable.map((url, i) => {
      const img = h("img", { src: url, alt: t("photo", { n: i + 1 }), loading: "lazy", referrerpolicy: "no-referrer" });
      img.addEventListener("error", () => img.classList.add("broken"));
      return img;
    }),
  );
}

/** The card of `listing` (the claim's `listing`, or a listing row of the evidence). */
export function listingCard(listing) {
  return h(
    "article",
    { class: "listing" },
    photos(listing.image_urls),
    h("h2", { class: "title", text: listing.title ?? "" }),
    price(listing),
    signals(listing.signals),
    facts([
      [t("brand"), listing.brand],
      [t("category"), listing.category],
      [t("region"), listing.region],
      [t("seller"), listing.seller_id],
      [t("listing"), listing.listing_id],
    ]),
    listing.description ? h("p", { class: "description", text: listing.description }) : null,
  );
}
