// The staff console: the escalation queue, an escalation's evidence, exclusive
// review (and the holder named when someone else holds one), confirming it
// with a note, and the case that opens; each vote's reliability in the
// evidence; axe-core on the queue and the evidence.
// Usage: SCREENSHOTS=<folder> node staff.mjs <api> <username> <password> <escalation> <held escalation> <holder id>
// Prints {case_id, reliabilities: [text], accessible: [page]}.

import { browser, open, signIn, shot, check, run, axe } from "./lib.mjs";

const [api, username, password, escalation, held, holder] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || "screenshots";

async function pages(b, width, height) {
  const { context, page, problems } = await open(b, api, { width, height, phone: width < 600 });
  await signIn(page, api, username, password);
  return { context, page, problems };
}

run(async () => {
  const b = await browser();
  const { context, page, problems } = await pages(b, 390, 844);

  // The queue, and the escalation held by someone else: its holder is named.
  await page.waitForSelector(`a[data-escalation="${held}"]`);
  await shot(page, shots, "staff-escalations");
  const accessible = [await axe(page, "staff queue")];
  await page.click(`a[data-escalation="${held}"]`);
  await page.click("[data-action=review]");
  await page.waitForFunction((who) => document.querySelector(".hold")?.textContent.includes(who), holder);
  await page.click("a.back");

  // Review, then confirm with a note.
  await page.click(`a[data-escalation="${escalation}"]`);
  await page.waitForSelector(".detail[data-status=open]");
  check((await page.textContent(".listing .title")).includes("<script>"), "the listing's title shows as text");
  await shot(page, shots, "staff-escalation");
  accessible.push(await axe(page, "escalation evidence"));
  // The votes table: the reliability column (the fifth) of every vote.
  const reliabilities = await page.locator(".detail table tbody tr td:nth-child(5)").allTextContents();
  await page.click("[data-action=review]");
  await page.waitForFunction(() => /until|至/.test(document.querySelector(".hold")?.textContent ?? ""));
  await page.fill("#decision-note", "logo and stitching are wrong");
  await page.click("[data-decision=confirm]");
  await page.waitForSelector(".detail[data-status=confirmed] a.case-link");
  const href = await page.getAttribute("a.case-link", "href");
  const caseId = decodeURIComponent(href.split("/").pop());

  // The case, then the case list.
  await page.click("a.case-link");
  await page.waitForSelector(".detail[data-state]");
  await shot(page, shots, "staff-case");
  accessible.push(await axe(page, "case"));
  await page.click("nav a[href='#/cases']");
  await page.waitForSelector(`a[data-case="${caseId}"]`);
  await shot(page, shots, "staff-cases");
  check(problems.length === 0, problems.join("; "));
  check((await page.evaluate(() => window.__pwned)) === undefined, "listing markup ran");
  await context.close();

  // The same pages on a desktop.
  const desk = await pages(b, 1280, 900);
  await desk.page.selectOption("#filter", "");
  await desk.page.waitForSelector(`a[data-escalation="${escalation}"]`);
  await shot(desk.page, shots, "staff-escalations");
  await desk.page.click(`a[data-escalation="${escalation}"]`);
  await desk.page.waitForSelector(".detail[data-status=confirmed]");
  await shot(desk.page, shots, "staff-escalation");
  await desk.page.goto(`${api}/app/#/cases/${encodeURIComponent(caseId)}`);
  await desk.page.waitForSelector(".detail[data-state]");
  await shot(desk.page, shots, "staff-case");
  await desk.page.click("nav a[href='#/cases']");
  await desk.page.waitForSelector(`a[data-case="${caseId}"]`);
  await shot(desk.page, shots, "staff-cases");
  check(desk.problems.length === 0, desk.problems.join("; "));
  await b.close();
  return { case_id: caseId, reliabilities, accessible };
});
