// The dashboards once votes, decisions and escalations exist: every chart is an
// SVG with a title and a description, the throughput and decision charts have
// non-zero points whose values add up to what the record holds, prevalence
// shows a share with its interval, and the health tiles show dead letters and
// outbox lag. axe-core checks the page; screenshots at 390 and 1280 px.
// Usage: SCREENSHOTS=<folder> node dashboard.mjs <api> <username> <password>
// Prints {sums: {votes, decisions, escalations}, nonzero: {chart: n}, prevalence_points, tiles: [name], accessible: [page]}.

import { browser, open, signIn, shot, check, run, axe } from "./lib.mjs";

const [api, username, password] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || "screenshots";

/** What the page drew: per chart, its marks' values by series. */
async function drawn(page) {
  return page.evaluate(() => {
    const out = {};
    for (const fig of document.querySelectorAll("figure.chart")) {
      const svg = fig.querySelector("svg[role=img]");
      const series = [...fig.querySelectorAll("g.series")].map((g) => [...g.querySelectorAll(".mark")].map((m) => Number(m.dataset.value)));
      out[fig.dataset.chart] = {
        titled: Boolean(svg?.querySelector("title")?.textContent && svg?.querySelector("desc")?.textContent),
        labelled: Boolean(svg?.getAttribute("aria-labelledby")),
        table_rows: fig.querySelectorAll("details table tbody tr").length,
        series,
        marks: [...fig.querySelectorAll(".mark")].map((m) => Number(m.dataset.value)),
      };
    }
    return out;
  });
}

async function dashboard(b, width, height) {
  const { context, page, problems } = await open(b, api, { width, height, phone: width < 600 });
  await signIn(page, api, username, password);
  await page.waitForSelector("nav a[href='#/dashboard']");
  await page.click("nav a[href='#/dashboard']");
  await page.waitForSelector(".dashboard[data-loaded=true]");
  await page.waitForSelector("figure[data-chart=prevalence] svg");
  return { context, page, problems };
}

run(async () => {
  const b = await browser();
  const { context, page, problems } = await dashboard(b, 390, 844);
  const charts = await drawn(page);
  for (const name of ["backlog", "throughput", "decisions", "prevalence"]) {
    check(charts[name], `the ${name} chart is drawn`);
    check(charts[name].titled && charts[name].labelled, `the ${name} chart has a title and a description`);
    check(charts[name].table_rows > 0, `the ${name} chart has a data table`);
  }
  const sum = (values) => values.filter(Number.isFinite).reduce((a, v) => a + v, 0);
  const sums = {
    votes: sum(charts.throughput.series[0]),
    decisions: sum(charts.decisions.series[0]),
    escalations: sum(charts.decisions.series[1]),
  };
  const nonzero = Object.fromEntries(Object.entries(charts).map(([name, c]) => [name, c.marks.filter((v) => v > 0).length]));
  check(nonzero.throughput > 0 && nonzero.decisions > 0, `charts with data: ${JSON.stringify(nonzero)}`);
  const tiles = await page.locator("[data-tile]").evaluateAll((els) => els.map((e) => e.dataset.tile));
  check(tiles.includes("dead_letters") && tiles.includes("outbox_lag"), `health tiles: ${tiles}`);
  check((await page.textContent("[data-tile=dead_letters] .tile-value")).trim() !== "—", "dead letters are counted");
  await shot(page, shots, "staff-dashboard");
  const accessible = [await axe(page, "dashboards")];

  // Another window redraws from the server.
  await page.selectOption("#window", "3600");
  await page.waitForFunction(() => document.querySelector("figure[data-chart=throughput] details tbody")?.children.length > 0);
  check(problems.length === 0, problems.join("; "));
  await context.close();

  const desk = await dashboard(b, 1280, 900);
  const wide = await drawn(desk.page);
  check(wide.throughput.marks.some((v) => v > 0), "the desktop throughput chart has data");
  await shot(desk.page, shots, "staff-dashboard");
  accessible.push(await axe(desk.page, "dashboards, desktop"));
  check(desk.problems.length === 0, desk.problems.join("; "));
  await b.close();
  return { sums, nonzero, prevalence_points: nonzero.prevalence, tiles, accessible };
});
