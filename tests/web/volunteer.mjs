// The volunteer's side on a phone: sign in, claim, vote with a key and with a
// tap, skip, vote offline and see the vote sent once back online, switch the
// language; every listing carries hostile markup that must stay text. The
// price shows beside the category's typical price, the signals as words, and
// the header today's votes and the streak; axe-core checks both pages.
// Usage: SCREENSHOTS=<folder> node volunteer.mjs <api> <username> <password>
// Prints {votes: [{task_id, verdict, reasons}], skipped: {task_id, lease_token},
// typical_price_shown, signals_shown, today: {votes, streak}, accessible: [page]}.

import { browser, open, signIn, shot, check, run, axe } from "./lib.mjs";

const [api, username, password] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || "screenshots";

async function currentTask(page, previous) {
  await page.waitForFunction(
    (prev) => {
      const el = document.querySelector(".task[data-task]");
      return el && el.dataset.task !== prev;
    },
    previous ?? "",
    { timeout: 30_000 },
  );
  return page.getAttribute(".task[data-task]", "data-task");
}

async function untouched(page, problems, where) {
  const flag = await page.evaluate(() => window.__pwned);
  check(flag === undefined, `${where}: listing markup ran (window.__pwned = ${flag})`);
  check((await page.locator("main script, main img[src='x']").count()) === 0, `${where}: listing markup became elements`);
  check(problems.length === 0, `${where}: ${problems.join("; ")}`);
}

run(async () => {
  const b = await browser();
  const votes = [];
  const leases = new Map();
  const { context, page, problems } = await open(b, api, { width: 390, height: 844, phone: true });
  page.on("response", async (r) => {
    if (r.url().endsWith("/v1/tasks/claim") && r.status() === 200) {
      // A claim answered while the page reloads has no body to read: not one this test needs.
      const body = await r.json().catch(() => null);
      if (body) leases.set(body.task_id, body.lease_token);
    }
  });

  await page.goto(`${api}/app/`);
  await page.waitForSelector("form.login");
  await shot(page, shots, "volunteer-sign-in");
  const accessible = [await axe(page, "volunteer sign-in")];
  await signIn(page, api, username, password);

  // The listing: its title shown as text, nothing of it run.
  let task = await currentTask(page);
  const title = await page.textContent(".listing .title");
  check(title.includes("<script>window.__pwned=1</script>"), `the title shows as text: ${title}`);
  check((await page.textContent(".listing .description")).includes("onerror"), "the description shows as text");
  await untouched(page, problems, "first listing");
  const typicalShown = await page.locator(".listing .price .typical").count();
  const signalsShown = await page.locator(".listing .signal").allTextContents();
  await shot(page, shots, "volunteer-review");
  accessible.push(await axe(page, "volunteer review"));

  // A reason chip, then the key C.
  await page.tap("[data-reason=logo_mismatch]");
  check((await page.getAttribute("[data-reason=logo_mismatch]", "aria-pressed")) === "true", "the chip is pressed");
  await page.keyboard.press("c");
  votes.push({ task_id: task, verdict: "counterfeit", reasons: ["logo_mismatch"] });
  task = await currentTask(page, task);
  await page.waitForSelector(".figures[data-votes='1']");

  // One tap on Genuine.
  await page.fill("#note", "looks like the real thing");
  await page.tap("[data-verdict=genuine]");
  votes.push({ task_id: task, verdict: "genuine", reasons: [], note: "looks like the real thing" });
  task = await currentTask(page, task);

  // Skip releases the lease.
  const skipped = { task_id: task, lease_token: leases.get(task) };
  check(skipped.lease_token, "the claim's lease token was seen");
  await page.tap("button.skip");
  task = await currentTask(page, task);

  // Offline: the vote waits in the outbox, and lands once back online.
  await context.setOffline(true);
  await page.keyboard.press("u");
  votes.push({ task_id: task, verdict: "unsure", reasons: [] });
  await page.waitForSelector("[data-state=offline]");
  await page.waitForSelector(".queued:not([hidden])");
  const waiting = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("spotcheck.outbox.")).length);
  check(waiting === 1, "the offline vote is kept");
  await context.setOffline(false);
  await page.waitForFunction(() => !Object.keys(localStorage).some((k) => k.startsWith("spotcheck.outbox.")), null, { timeout: 30_000 });
  task = await currentTask(page, task);
  await page.waitForSelector(".figures[data-votes='3']");
  // Today's figures follow the votes (a fresh /v1/me after a reload says the same).
  await page.waitForSelector(".today[data-today='3']");

  // Simplified Chinese, remembered across a reload (which keeps the session).
  await page.click(".who button.link >> nth=0");
  await page.waitForSelector("text=投票：3");
  await page.reload();
  await page.waitForSelector(".task[data-task]");
  check((await page.textContent(".figures")).includes("投票"), "the language is remembered");
  const today = { votes: Number(await page.getAttribute(".today", "data-today")), streak: Number(await page.getAttribute(".today", "data-streak")) };
  check((await page.textContent(".today")).includes("连续"), "the streak shows in Chinese");
  check((await page.evaluate(() => Object.keys(localStorage).filter((k) => /token|access/i.test(k)))).length === 0, "no token in localStorage");
  await untouched(page, problems, "after the reload");
  await context.close();

  // The same pages on a desktop.
  const desk = await open(b, api, { width: 1280, height: 900 });
  await desk.page.goto(`${api}/app/`);
  await desk.page.waitForSelector("form.login");
  await shot(desk.page, shots, "volunteer-sign-in");
  await signIn(desk.page, api, username, password);
  await desk.page.waitForSelector(".task[data-task]");
  await untouched(desk.page, desk.problems, "desktop");
  await shot(desk.page, shots, "volunteer-review");
  accessible.push(await axe(desk.page, "volunteer review, desktop"));
  await desk.context.close();
  await b.close();
  return { votes, skipped, typical_price_shown: typicalShown > 0, signals_shown: signalsShown, today, accessible };
});
