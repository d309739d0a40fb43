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

import { createRequire } from "node:module";
import { mkdtempSync, rmSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");

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
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  fail(2, `${executablePath} is missing; run scripts/install-chromium.sh`);
}

// An ES module ignores NODE_PATH, so resolve the package the CommonJS way from the
// test dependencies first, then from NODE_PATH and the script's own folder.
function loadPlaywright() {
  const bases = [
    join(root, "build/test-deps/package.json"),
    ...(process.env.NODE_PATH || "")
      .split(":")
      .filter(Boolean)
      .map((dir) => join(resolve(dir), "..", "package.json")),
    join(here, "package.json"),
  ];
  for (const base of bases) {
    try {
      return createRequire(base)("playwright-core");
    } catch {
      // Try the next place.
    }
  }
  fail(2, "cannot find playwright-core; run tests/deps/install.sh (it installs it into build/test-deps)");
}

const { chromium } = loadPlaywright();
const pageUrl = pathToFileURL(htmlPath).href;
const profile = mkdtempSync(join(tmpdir(), "render-report-"));
const problems = [];
let context;

try {
  // Playwright refuses a --user-data-dir argument and takes the directory here
  // instead; a fresh one per run keeps earlier runs' state out.
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    // Debian's Chromium as root in a container: no sandbox, no GPU, and none of the
    // background traffic (updates, sync, QUIC probes) that would count as requests.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 60_000,
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
  });
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
  if (context) {
    await context.close().catch(() => {});
  }
  rmSync(profile, { recursive: true, force: true });
}

if (problems.length > 0) {
  fail(1, `${htmlPath} failed the render check:\n  - ${problems.join("\n  - ")}`);
}
