// The sampling rules editor: a staff member lowers the default rate, adds a
// rule for one category (first with a rate out of range, which is marked
// beside the field and keeps Save disabled), sees the dry run's per-stratum
// change, saves, and finds the new version at the top of the history with what
// changed. axe-core checks the page; screenshots at 390 and 1280 px.
// Usage: SCREENSHOTS=<folder> node rules.mjs <api> <username> <password> <category>
// Prints {version, dry_run: {stratum, tasks}, history: [line], accessible: [page]}.

import { browser, open, signIn, shot, check, run, axe } from "./lib.mjs";

const [api, username, password, category] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || "screenshots";

run(async () => {
  const b = await browser();
  const { context, page, problems } = await open(b, api, { width: 390, height: 844, phone: true });
  await signIn(page, api, username, password);
  await page.waitForSelector("nav a[href='#/rules']");
  await page.click("nav a[href='#/rules']");
  await page.waitForSelector(".rules-form #default-rate");
  const before = Number(await page.getAttribute(".rules", "data-version"));

  // Typed out of range: marked beside the field, and nothing can be saved.
  await page.fill("#default-rate", "0.5");
  await page.click("[data-action=add-rule]");
  await page.waitForSelector("#rule-0-category", { timeout: 5000 }).catch(async () => check(false, `no rule row: ${problems.join("; ")} ${(await page.innerHTML("main")).slice(0, 3000)}`));
  await page.fill("#rule-0-category", category);
  await page.fill("#rule-0-rate", "1.5");
  await page.waitForFunction(() => document.querySelector("[data-error-for='rules[0].rate']")?.textContent.length > 0);
  check((await page.getAttribute("#rule-0-rate", "aria-invalid")) === "true", "the rate is marked invalid");
  check(await page.isDisabled("[data-action=save]"), "Save is disabled while a field is wrong");

  // Fixed: the dry run shows the stratum's expected tasks going up.
  await page.fill("#rule-0-rate", "1");
  await page.waitForSelector(".dryrun[data-state=ready]");
  check((await page.textContent("[data-error-for='rules[0].rate']")) === "", "the rate's problem is gone");
  const row = page.locator(`.dry-table tr[data-stratum^="${category}/"]`).first();
  const stratum = await row.getAttribute("data-stratum");
  const tasks = await row.locator("td").nth(1).textContent();
  check(/→/.test(tasks), `the stratum's tasks show in force → proposed: ${tasks}`);
  const other = await page.locator(`.dry-table tr[data-stratum]:not([data-stratum^="${category}/"]) td.delta`).first().textContent();
  check(other.startsWith("−"), `another stratum loses tasks with the lower default rate: ${other}`);
  await shot(page, shots, "staff-rules");
  const accessible = [await axe(page, "sampling rules")];

  // Saved: a new version, first in the history, saying what changed.
  check(!(await page.isDisabled("[data-action=save]")), "Save is enabled after the dry run");
  await page.click("[data-action=save]");
  await page.waitForFunction((v) => Number(document.querySelector(".rules")?.dataset.version) > v, before);
  const version = Number(await page.getAttribute(".rules", "data-version"));
  await page.waitForSelector(`.history li[data-version="${version}"]`);
  const first = await page.getAttribute(".history > li:first-child", "data-version");
  check(Number(first) === version, `the new version ${version} heads the history (${first})`);
  const history = await page.locator(`.history li[data-version="${version}"] .changes li`).allTextContents();
  check(problems.length === 0, problems.join("; "));
  await context.close();

  const desk = await open(b, api, { width: 1280, height: 900 });
  await signIn(desk.page, api, username, password);
  await desk.page.waitForSelector("nav a[href='#/rules']");
  await desk.page.click("nav a[href='#/rules']");
  await desk.page.waitForSelector(`.history li[data-version="${version}"]`);
  check(Number(await desk.page.getAttribute(".rules", "data-version")) === version, "the saved version is in force");
  check((await desk.page.inputValue("#rule-0-category")) === category, "the saved rule loads into the editor");
  await shot(desk.page, shots, "staff-rules");
  accessible.push(await axe(desk.page, "sampling rules, desktop"));
  check(desk.problems.length === 0, desk.problems.join("; "));
  await b.close();
  return { version, dry_run: { stratum, tasks }, history, accessible };
});
