// The official TypeScript MCP SDK as a client with a bearer token, for the identity tests.
//
// Usage: node tests/clients/auth_ts_client.mjs SPEC_JSON, where SPEC_JSON is an object with
//   url     the MCP endpoint (Streamable HTTP),
//   token   sent as `Authorization: Bearer <token>` on every request (the transport's
//           `requestInit.headers`),
//   call    {"tool": NAME, "args": {...}}: the tool to call after listing.
//
// Prints one JSON line: {"server": NAME, "tools": [...], "call": RESULT} on success, or
// {"error": MESSAGE} (exit status 1) when connecting, listing or calling fails.

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

async function main(spec) {
  const transport = new StreamableHTTPClientTransport(new URL(spec.url), {
    requestInit: { headers: { Authorization: `Bearer ${spec.token}` } },
  });
  const client = new Client({ name: "auth-ts-client", version: "1.0.0" });
  await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
  try {
    const listing = await client.listTools(undefined, { timeout: REQUEST_TIMEOUT_MS });
    const call = await client.callTool(
      { name: spec.call.tool, arguments: spec.call.args ?? {} },
      undefined,
      { timeout: REQUEST_TIMEOUT_MS },
    );
    return {
      server: client.getServerVersion()?.name ?? null,
      tools: listing.tools.map((tool) => tool.name),
      call: { structured: call.structuredContent ?? null, is_error: call.isError ?? false },
    };
  } finally {
    await client.close();
  }
}

try {
  const report = await main(JSON.parse(process.argv[2]));
  console.log(JSON.stringify(report));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error) }));
  process.exitCode = 1;
}
