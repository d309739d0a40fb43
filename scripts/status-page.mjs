// Drives the bridge's status page (GET /) in headless Chromium for a test, step by step.
//
// Usage: STATUS_PAGE_TOKEN=ADMIN_TOKEN node scripts/status-page.mjs BRIDGE_URL OUT_DIR
// (the token comes from the environment so it never shows in a process list).
//
// It opens BRIDGE_URL/, waits until the page says it needs the admin token (the data
// endpoint answered 401) and screenshots that, enters the token, waits until the
// servers, processes and plugins tables are filled and screenshots again, then follows
// commands read from stdin, one JSON object a line:
//   {"cmd":"wait_change","field":F,"from":V}  wait until [data-field=F] no longer reads V
//   {"cmd":"wait_text","table":T,"contains":S} wait until table #T's text contains S
//   {"cmd":"screenshot","name":N}              save OUT_DIR/N.png (full page)
//   {"cmd":"done"}                             finish
// After each step it prints one JSON line: {"event":...,"view":{state,fields,tables}}.
// Every wait is bounded (WAIT_MS). Any console error, page error, failed request or
// request to another origin fails the run: only Chromium's own log line for the
// expected 401 while locked is allowed. The last line is {"event":"finished",
// "problems":[...]}; it exits 0 when there were none, 1 otherwise, 2 on a usage or
// setup error.

import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

import { launchChromium } from "./lib/chromium.mjs";

/// How long any one wait may take.
const WAIT_MS = 30_000;

function fail(code, message) {
  console.error(`status-page: ${message}`);
  process.exit(code);
}

const [baseArg, outArg] = process.argv.slice(2);
if (!baseArg || !outArg) {
  fail(2, "usage: STATUS_PAGE_TOKEN=TOKEN node scripts/status-page.mjs BRIDGE_URL OUT_DIR");
}
const token = process.env.STATUS_PAGE_TOKEN || "";
if (!token) {
  fail(2, "set STATUS_PAGE_TOKEN to the bridge's admin token");
}
const origin = new URL(baseArg).origin;
const outDir = resolve(outArg);
mkdirSync(outDir, { recursive: true });

const problems = [];
let locked = true;
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

// What the page shows: its state badge, every data-field, every table's cell texts.
function readView(page) {
  return page.evaluate(() => ({
    state: document.querySelector("#state")?.dataset.state,
    stateText: document.querySelector("#state")?.textContent,
    message: document.querySelector("#message")?.textContent,
    fields: Object.fromEntries(
      [...document.querySelectorAll("[data-field]")].map((e) => [e.dataset.field, e.textContent]),
    ),
    tables: Object.fromEntries(
      [...document.querySelectorAll("table[id]")].map((t) => [
        t.id,
        [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)),
      ]),
    ),
  }));
}

async function screenshot(page, name) {
  if (!/^[a-z0-9-]+$/.test(name)) {
    throw new Error(`screenshot name ${JSON.stringify(name)} is not [a-z0-9-]+`);
  }
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

let browser;
try {
  browser = await launchChromium(fail, { prefix: "status-page-", viewport: { width: 1400, height: 900 } });
  const { context } = browser;
  const page = await context.newPage();

  // Only the bridge's origin; anything else is aborted before it leaves the machine.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) {
      return route.continue();
    }
    problems.push(`request to another origin: ${url}`);
    return route.abort("blockedbyclient");
  });
  page.on("console", (message) => {
    if (message.type() !== "error") {
      return;
    }
    const text = message.text();
    const expected401 =
      locked &&
      text.includes("status of 401") &&
      (message.location()?.url || "").endsWith("/admin/status");
    if (!expected401) {
      problems.push(`console error: ${text}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) =>
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText ?? "?"})`),
  );

  const response = await page.goto(`${origin}/`, { waitUntil: "load", timeout: WAIT_MS });
  if (!response || !response.ok()) {
    throw new Error(`GET / answered ${response?.status()}`);
  }
  const policy = (await response.allHeaders())["content-security-policy"] || "";
  if (!policy.includes("script-src 'sha256-")) {
    problems.push(`the page's content security policy does not pin its script: ${policy}`);
  }

  // Without a token the data endpoint refuses, and the page says so.
  await page.waitForSelector('#state[data-state="locked"]', { timeout: WAIT_MS });
  await page.waitForSelector("#token", { state: "visible", timeout: WAIT_MS });
  const lockedShot = await screenshot(page, "locked");
  emit({ event: "locked", view: await readView(page), screenshot: lockedShot });

  locked = false;
  await page.fill("#token", token);
  await page.click("#token-use");
  await page.waitForFunction(
    () =>
      document.querySelector("#state")?.dataset.state === "live" &&
      ["servers", "processes", "plugins"].every(
        (id) => document.querySelector(`#${id} tbody`).rows.length > 0,
      ),
    null,
    { timeout: WAIT_MS, polling: 100 },
  );
  const stored = await page.evaluate(() => ({
    session: Object.keys(sessionStorage).length,
    local: Object.keys(localStorage).length,
    url: location.href,
  }));
  if (stored.local !== 0 || stored.session !== 1 || stored.url.includes("?")) {
    problems.push(`the token is not kept in sessionStorage alone: ${JSON.stringify(stored)}`);
  }
  const liveShot = await screenshot(page, "live");
  emit({ event: "live", view: await readView(page), screenshot: liveShot });

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) {
      continue;
    }
    const command = JSON.parse(line);
    if (command.cmd === "done") {
      break;
    } else if (command.cmd === "wait_change") {
      await page.waitForFunction(
        ({ field, from }) => {
          const element = document.querySelector(`[data-field="${field}"]`);
          return element !== null && element.textContent !== from;
        },
        { field: command.field, from: String(command.from) },
        { timeout: WAIT_MS, polling: 100 },
      );
      emit({ event: "changed", view: await readView(page) });
    } else if (command.cmd === "wait_text") {
      await page.waitForFunction(
        ({ table, contains }) =>
          (document.querySelector(`#${table} tbody`)?.textContent || "").includes(contains),
        { table: command.table, contains: String(command.contains) },
        { timeout: WAIT_MS, polling: 100 },
      );
      emit({ event: "found", view: await readView(page) });
    } else if (command.cmd === "screenshot") {
      emit({ event: "screenshot", path: await screenshot(page, command.name) });
    } else {
      throw new Error(`unknown command ${line}`);
    }
  }
  if (await page.locator("#state").getAttribute("data-state") !== "live") {
    problems.push(`the page is not live at the end: ${JSON.stringify(await readView(page))}`);
  }
} catch (error) {
  problems.push(`browser failure: ${error?.message ?? error}`);
} finally {
  await browser?.close();
}

emit({ event: "finished", problems });
process.exit(problems.length > 0 ? 1 : 0);
