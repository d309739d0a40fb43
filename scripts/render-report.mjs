// Render check for the policy lab's report.html: opens it from disk in headless Chromium
// (Debian's /usr/bin/chromium, driven by the pinned playwright-core from tests/deps),
// checks that every chart has a size, that the page logged no error and fetched nothing
// but itself, and saves a full-page PNG screenshot.
//
// Usage: node scripts/render-report.mjs REPORT.html OUT.png
// playwright-core is resolved from build/test-deps/node_modules (tests/deps/install.sh
// puts it there), or from NODE_PATH, so the script runs from any directory.
// Exits 0 when every check passes, 1 with a message naming each failure otherwise, and
// 2 on a usage or setup error.

import { statSync, existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

import { launchChromium } from "./lib/chromium.mjs";

function fail(code, message) {
  console.error(`render-report: ${message}`);
  process.exit(code);
}

const [htmlArg, pngArg] = process.argv.slice(2);
if (!htmlArg || !pngArg) {
  fail(2, "usage: node scripts/render-report.mjs REPORT.html OUT.png");
}
const htmlPath = resolve(htmlArg);
const pngPath = resolve(pngArg);
if (!existsSync(htmlPath) || !statSync(htmlPath).isFile()) {
  fail(2, `${htmlPath} is not a file`);
}

const pageUrl = pathToFileURL(htmlPath).href;
const problems = [];
let browser;

try {
  browser = await launchChromium(fail, { prefix: "render-report-" });
  const { context } = browser;
  const page = await context.newPage();

  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  // Anything but the file itself is a failure anyway; abort it so a broken report
  // never reaches the network from CI.
  await context.route("**/*", (route) =>
    route.request().url() === pageUrl ? route.continue() : route.abort("blockedbyclient"),
  );
  page.on("console", (message) => {
    if (message.type() === "error") {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) =>
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText ?? "?"})`),
  );

  const response = await page.goto(pageUrl, { waitUntil: "load", timeout: 30_000 });
  if (response && !response.ok()) {
    problems.push(`loading ${pageUrl} answered ${response.status()}`);
  }
  await page.evaluate(() => document.fonts.ready);

  // Fragment-only URLs (the charts' url(#hatch) patterns) are not requests; anything
  // else, even a favicon, means the page is not self-contained.
  const foreign = requests.filter((url) => url !== pageUrl);
  for (const url of foreign) {
    problems.push(`network request other than the file itself: ${url}`);
  }

  const charts = await page.$$eval("svg", (svgs) =>
    svgs.map((svg, index) => {
      const box = svg.getBoundingClientRect();
      return { id: svg.id || `svg #${index + 1}`, width: box.width, height: box.height };
    }),
  );
  for (const chart of charts) {
    if (!(chart.width > 0 && chart.height > 0)) {
      problems.push(`${chart.id} has an empty bounding box (${chart.width}×${chart.height})`);
    }
  }

  await page.screenshot({ path: pngPath, fullPage: true });
  const size = statSync(pngPath).size;
  console.log(
    `render-report: ${charts.length} charts (${charts.map((c) => `${c.id} ${Math.round(c.width)}×${Math.round(c.height)}`).join(", ")}), ` +
      `${requests.length} request(s), screenshot ${pngPath} (${size} bytes)`,
  );
} catch (error) {
  problems.push(`browser failure: ${error?.message ?? error}`);
} finally {
  await browser?.close();
}

if (problems.length > 0) {
  fail(1, `${htmlPath} failed the render check:\n  - ${problems.join("\n  - ")}`);
}
