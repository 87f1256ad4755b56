// Shared by the browser scripts: the system's Chromium driven by playwright-core,
// every request outside the app's origin refused (the tests run offline),
// screenshots written under the folder the caller names, and the axe-core
// accessibility check of a page.

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const PHOTO = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><rect width="40" height="40" fill="#cbd5e1"/><circle cx="28" cy="12" r="4" fill="#f8fafc"/><path d="M6 32l10-13 7 8 4-5 7 10z" fill="#64748b"/></svg>`;

/** Fails the script with `message`. */
export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Launches headless Chromium; `CHROMIUM` names the executable. */
export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/**
 * A page of a new context `width` px wide on `api`. Requests leaving the
 * origin are aborted; console messages about the Content Security Policy and
 * page errors are collected in `problems`.
 */
export async function open(b, api, { width, height, phone = false }) {
  const context = await b.newContext({
    viewport: { width, height },
    isMobile: phone,
    hasTouch: phone,
    deviceScaleFactor: 1,
    locale: "en-US",
  });
  const origin = new URL(api).origin;
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith("data:")) return route.continue();
    // The listings' photos: a stand-in picture, so screenshots show where they go.
    if (url.startsWith("https://images.example.com/")) {
      return route.fulfill({ status: 200, contentType: "image/svg+xml", body: PHOTO });
    }
    return route.abort();
  });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) problems.push(`csp: ${m.text()}`);
  });
  return { context, page, problems };
}

/** Signs in through the form. */
export async function signIn(page, api, username, password) {
  await page.goto(`${api}/app/`);
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click("form.login button[type=submit]");
}

/** Writes `<name>-<width>.png` into `dir`. */
export async function shot(page, dir, name) {
  mkdirSync(dir, { recursive: true });
  const width = page.viewportSize().width;
  // From the top, so the sticky header sits where it belongs in the full-page picture.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(dir, `${name}-${width}.png`), fullPage: true });
}

/**
 * Runs axe-core on the page as it stands and fails on any serious or critical
 * violation; returns `where` for the caller's list of pages checked. The
 * source goes in through the DevTools protocol (page.evaluate), which the
 * page's Content-Security-Policy does not govern, so the policy stays strict.
 */
export async function axe(page, where) {
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  });
  check(found.length === 0, `accessibility of ${where}:\n  ${found.join("\n  ")}`);
  return where;
}

/** Runs `main`, prints its JSON result on the last line, exits 1 on failure. */
export async function run(main) {
  try {
    const result = await main();
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(e.stack || String(e));
    process.exit(1);
  }
}
