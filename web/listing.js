// A listing as the volunteer (or staff member) sees it. Every field is the
// seller's text: set as text, images only from https (or data:) addresses.

import { h, facts, safeUrl } from "./dom.js";
import { t } from "./i18n.js";

function price(listing) {
  const amount = Number(listing.price);
  if (!Number.isFinite(amount)) return String(listing.price ?? "");
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: listing.currency || "USD" }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${listing.currency ?? ""}`;
  }
}

function photos(urls) {
  const usable = (Array.isArray(urls) ? urls : []).filter((u) => safeUrl(u, true)).slice(0, 8);
  if (!usable.length) return h("div", { class: "photos empty", text: t("no_photos") });
  return h(
    "div",
    { class: "photos" },
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
    h("p", { class: "price", text: price(listing) }),
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
