// What the headless-Chromium checks share (scripts/render-report.mjs,
// scripts/status-page.mjs): finding the pinned playwright-core, and launching Debian's
// /usr/bin/chromium (or $CHROMIUM) with a fresh profile and no background traffic.

import { createRequire } from "node:module";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

// Debian's Chromium as root in a container: no sandbox, no GPU, and none of the
// background traffic (updates, sync, QUIC probes) that would count as requests.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// An ES module ignores NODE_PATH, so resolve the package the CommonJS way from the
// test dependencies first, then from NODE_PATH and the scripts folder. Returns null
// when it is nowhere.
function loadPlaywright() {
  const bases = [
    join(root, "build/test-deps/package.json"),
    ...(process.env.NODE_PATH || "")
      .split(":")
      .filter(Boolean)
      .map((dir) => join(resolve(dir), "..", "package.json")),
    join(root, "scripts/package.json"),
  ];
  for (const base of bases) {
    try {
      return createRequire(base)("playwright-core");
    } catch {
      // Try the next place.
    }
  }
  return null;
}

// Launches headless Chromium in a fresh profile. `fail(code, message)` is called (and
// must not return) when the browser or playwright-core is missing. Returns the
// context and a `close()` that also deletes the profile.
export async function launchChromium(fail, { prefix, viewport = { width: 1280, height: 900 } }) {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    fail(2, `${executablePath} is missing; run scripts/install-chromium.sh`);
  }
  const playwright = loadPlaywright();
  if (!playwright) {
    fail(2, "cannot find playwright-core; run tests/deps/install.sh (it installs it into build/test-deps)");
  }
  // Playwright refuses a --user-data-dir argument and takes the directory here
  // instead; a fresh one per run keeps earlier runs' state out.
  const profile = mkdtempSync(join(tmpdir(), prefix));
  let context;
  try {
    context = await playwright.chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
      viewport,
      deviceScaleFactor: 1,
    });
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
