// The API reference at /docs/: Swagger UI renders the served document under
// its Content Security Policy. Every operation of /openapi.json appears on the
// page (method and path), one operation expands to show its responses, and no
// page error or CSP report reached the console. Screenshot at 1280 px.
// Usage: SCREENSHOTS=<folder> node docs.mjs <api>
// Prints {title, operations, shown, expanded: {path, responses: [status]}}.

import { browser, open, shot, check, run } from "./lib.mjs";

const [api] = process.argv.slice(2);
const shots = process.env.SCREENSHOTS || "screenshots";

run(async () => {
  const doc = await (await fetch(`${api}/openapi.json`)).json();
  const wanted = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));
  const b = await browser();
  const { context, page, problems } = await open(b, api, { width: 1280, height: 900 });
  const csp = [];
  page.on("response", (r) => {
    if (r.url() === `${api}/docs/`) csp.push(r.headers()["content-security-policy"] || "");
  });
  await page.goto(`${api}/docs/`);
  await page.waitForSelector(".swagger-ui .info .title");
  await page.waitForSelector(".swagger-ui .opblock .opblock-summary-path");
  const title = (await page.locator(".swagger-ui .info .title").innerText()).trim();
  const shown = await page.locator(".swagger-ui .opblock").evaluateAll((blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent.trim();
      const path = block.querySelector(".opblock-summary-path")?.dataset.path;
      return `${method} ${path}`;
    }),
  );
  const missing = wanted.filter((op) => !shown.includes(op));
  check(wanted.length > 0 && missing.length === 0, `operations of the document missing from the page: ${missing.join(", ")}`);

  // One operation opens to its parameters and responses, drawn from the schemas.
  const path = "/v1/staff/escalations/{id}";
  const block = page.locator(`.opblock-get:has(.opblock-summary-path[data-path="${path}"])`);
  await block.locator(".opblock-summary").click();
  await block.locator(".responses-table .response").first().waitFor();
  const responses = await block.locator(".responses-table tr.response").evaluateAll((rows) => rows.map((r) => r.dataset.code));
  const opened = await block.locator(".opblock-summary-path").getAttribute("data-path");
  check(responses.includes("200") && responses.includes("404"), `the responses of ${opened}: ${responses} (the document's: ${Object.keys(doc.paths[path].get.responses)})`);
  const schema = await block.locator(".responses-table").innerText();
  check(schema.includes("evidence"), "the 200 response shows the escalation's schema");
  await shot(page, shots, "docs");

  check(csp.length === 1 && csp[0].includes("script-src 'self'"), `the page came with its policy: ${csp}`);
  check(problems.length === 0, `console problems: ${problems.join("; ")}`);
  await context.close();
  await b.close();
  return { title, operations: wanted.length, shown: shown.length, expanded: { path, responses } };
});
