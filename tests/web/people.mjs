// The volunteers and users pages. Volunteers: the one the abuse rules stopped
// is listed, their record shows gold accuracy by day as a chart, and their
// counting is reinstated; a collusion group names its members. Users: a
// volunteer is created from the form, one account suspended, another suspended
// and reinstated, and a volunteer linked to a seller. axe-core checks each
// page; screenshots at 390 and 1280 px.
// Usage: SCREENSHOTS=<folder> node people.mjs <api> <username> <password> <stopped id> <suspend name> <cycle name> <link name> <seller>
// Prints {gold_points, group_members: [name], created, accessible: [page]}.

import { browser, open, signIn, shot, check, run, axe } from "./lib.mjs";

const [api, username, password, stopped, suspendName, cycleName, linkName, seller] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || "screenshots";

async function signedIn(b, width, height) {
  const opened = await open(b, api, { width, height, phone: width < 600 });
  await signIn(opened.page, api, username, password);
  await opened.page.waitForSelector("nav a[href='#/users']");
  return opened;
}

/** The row of `name` on the users page, once it is listed. */
async function userRow(page, name) {
  await page.fill("#u-q", name);
  const row = page.locator(`li[data-username="${name}"]`);
  await row.waitFor();
  return row;
}

run(async () => {
  const b = await browser();
  const { context, page, problems } = await signedIn(b, 390, 844);
  const accessible = [];

  // Volunteers: the stopped one, their record, reinstated.
  await page.click("nav a[href='#/volunteers']");
  await page.waitForSelector(`a.row[data-volunteer="${stopped}"]`);
  await page.waitForSelector(".group[data-group] .members a");
  const groupMembers = await page.locator(".group[data-group] .members a").allTextContents();
  await shot(page, shots, "staff-volunteers");
  accessible.push(await axe(page, "volunteers"));
  await page.click(`a.row[data-volunteer="${stopped}"]`);
  await page.waitForSelector(".detail[data-counting=false]");
  await page.waitForSelector("figure[data-chart=gold] svg[role=img]");
  const goldPoints = await page.locator("figure[data-chart=gold] .mark").evaluateAll((els) => els.filter((e) => Number(e.dataset.value) > 0).length);
  check(goldPoints > 0, "the gold accuracy chart has points");
  await shot(page, shots, "staff-volunteer");
  accessible.push(await axe(page, "a volunteer's record"));
  await page.click("[data-action=reinstate-counting]");
  await page.waitForSelector(".detail[data-counting=true]");

  // Users: create, suspend, suspend and reinstate, link to a seller.
  await page.click("nav a[href='#/users']");
  await page.waitForSelector("li[data-username]");
  const created = "web-newcomer";
  await page.fill("#new-username", created);
  await page.fill("#new-password", "a-long-enough-passphrase");
  await page.selectOption("#new-role", "volunteer");
  await page.click("form.create-user button[type=submit]");
  await page.waitForSelector("form.create-user .result[data-created]");
  await userRow(page, created);

  let row = await userRow(page, suspendName);
  await row.locator("[data-action=suspend]").click();
  await page.waitForSelector(`li[data-username="${suspendName}"][data-status=suspended]`);

  row = await userRow(page, cycleName);
  await row.locator("[data-action=suspend]").click();
  await page.waitForSelector(`li[data-username="${cycleName}"][data-status=suspended]`);
  await page.locator(`li[data-username="${cycleName}"] [data-action=reinstate]`).click();
  await page.waitForSelector(`li[data-username="${cycleName}"][data-status=active]`);

  row = await userRow(page, linkName);
  await row.getByRole("button", { name: /seller/i }).click();
  await row.locator("form.link-form input").first().fill(seller);
  await row.locator("form.link-form button[type=submit]").click();
  await page.waitForFunction((who) => document.querySelector(`li[data-username="${who}"] .user-actions > .result`)?.textContent.length > 0, linkName);

  await page.fill("#u-q", "");
  await page.waitForFunction((n) => document.querySelectorAll("li[data-username]").length >= n, 4);
  await shot(page, shots, "staff-users");
  accessible.push(await axe(page, "users"));
  check(problems.length === 0, problems.join("; "));
  await context.close();

  const desk = await signedIn(b, 1280, 900);
  await desk.page.click("nav a[href='#/volunteers']");
  await desk.page.selectOption("#vfilter", "");
  await desk.page.waitForSelector(`a.row[data-volunteer="${stopped}"]`);
  await desk.page.waitForSelector(".group[data-group]");
  await shot(desk.page, shots, "staff-volunteers");
  await desk.page.click(`a.row[data-volunteer="${stopped}"]`);
  await desk.page.waitForSelector(".detail[data-counting=true] figure[data-chart=gold]");
  await shot(desk.page, shots, "staff-volunteer");
  await desk.page.click("nav a[href='#/users']");
  await desk.page.waitForSelector(`li[data-username="${suspendName}"][data-status=suspended]`);
  await shot(desk.page, shots, "staff-users");
  accessible.push(await axe(desk.page, "users, desktop"));
  check(desk.problems.length === 0, desk.problems.join("; "));
  await b.close();
  return { gold_points: goldPoints, group_members: groupMembers, created, accessible };
});
