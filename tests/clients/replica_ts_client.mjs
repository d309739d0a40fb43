// The official TypeScript MCP SDK as a session client through a load balancer, for the
// replica tests: each round renames one task, then reads the task list and reports whether
// the rename was visible (a read that starts after the write's answer must see it).
//
// Usage: node tests/clients/replica_ts_client.mjs SPEC_JSON, where SPEC_JSON is an object with
//   url     the MCP endpoint (Streamable HTTP), behind the balancer,
//   rounds  how many write-then-read rounds to run,
//   reads   how many reads follow each write,
//   task    the id of the task each round renames,
//   prefix  the start of each round's title.
//
// Prints one JSON line: {"server": NAME, "protocol": VERSION, "reads": N, "stale": N} on
// success, or {"error": MESSAGE} (exit status 1) when a request fails.

import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const deps = resolve(here, "../../build/test-deps");

// An ES module ignores NODE_PATH, so the SDK is resolved the CommonJS way from where
// tests/deps/install.sh put it, and then imported by its file URL.
const requireFromDeps = createRequire(join(deps, "package.json"));
const load = async (name) => import(pathToFileURL(requireFromDeps.resolve(name)).href);

const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = await load(
  "@modelcontextprotocol/sdk/client/streamableHttp.js",
);

// The longest one request may take before the client gives up.
const REQUEST_TIMEOUT_MS = 30_000;
const options = { timeout: REQUEST_TIMEOUT_MS };

async function main(spec) {
  const transport = new StreamableHTTPClientTransport(new URL(spec.url));
  const client = new Client({ name: "replica-ts-client", version: "1.0.0" });
  await client.connect(transport, options);
  let reads = 0;
  let stale = 0;
  try {
    for (let round = 0; round < spec.rounds; round++) {
      const title = `${spec.prefix} ${round}`;
      await client.callTool(
        { name: "update_task", arguments: { id: spec.task, title } },
        undefined,
        options,
      );
      for (let read = 0; read < spec.reads; read++) {
        const listing = await client.callTool(
          { name: "get_tasks", arguments: { status: "all" } },
          undefined,
          options,
        );
        const task = listing.structuredContent.tasks.find((task) => task.id === spec.task);
        reads += 1;
        if (task?.title !== title) stale += 1;
      }
    }
    return {
      server: client.getServerVersion()?.name ?? null,
      protocol: transport.protocolVersion ?? null,
      reads,
      stale,
    };
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close();
  }
}

try {
  console.log(JSON.stringify(await main(JSON.parse(process.argv[2]))));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error) }));
  process.exit(1);
}
