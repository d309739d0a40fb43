"""Runs a list of MCP operations against one bridge endpoint with the official Python SDK
and prints what happened as one JSON line, for the cache integration tests.

The SDK's own client-side response cache is turned off, so every operation reaches the
bridge and what the test sees is the bridge's cache alone.

Usage: cache_client.py SPEC_JSON, where SPEC_JSON is an object with
  url    the MCP endpoint (Streamable HTTP),
  mode   "legacy" or "2026-07-28" (the SDK's connect modes),
  steps  a list of operations, each an object with "op" and its arguments:
         {"op": "list_tools"}
         {"op": "call", "tool": NAME, "args": {...}, "progress": true|false}
         {"op": "read_resource", "uri": URI}
         {"op": "sleep", "seconds": S}

The printed object has the negotiated protocol_version and one result per step. List and
read results carry the `ttl_ms` and `cache_scope` the client received. A step that fails
with a JSON-RPC error records {"error": {"code": ..., "message": ...}} and the script goes
on with the next step.
"""

import json
import sys
import warnings

import anyio
from mcp import Client, types
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)


def cache_fields(result):
    """The caching hints a list or read result carried (defaults when absent)."""
    return {
        "ttl_ms": getattr(result, "ttl_ms", None),
        "cache_scope": getattr(result, "cache_scope", None),
    }


async def run_step(client, step):
    """Runs one step and returns its result as plain JSON."""
    op = step["op"]
    if op == "list_tools":
        listing = await client.list_tools()
        return {"tools": [tool.name for tool in listing.tools], **cache_fields(listing)}
    if op == "call":
        progress = []

        async def on_progress(value, total, message):
            progress.append([value, total, message])

        callback = on_progress if step.get("progress") else None
        result = await client.call_tool(step["tool"], step.get("args", {}), progress_callback=callback)
        return {
            "text": [getattr(block, "text", None) for block in result.content],
            "structured": result.structured_content,
            "is_error": result.is_error,
            "progress": progress,
        }
    if op == "read_resource":
        read = await client.read_resource(step["uri"])
        return {
            "texts": [getattr(item, "text", None) for item in read.contents],
            **cache_fields(read),
        }
    if op == "sleep":
        await anyio.sleep(step["seconds"])
        return {}
    raise ValueError(f"unknown op {op!r}")


async def main(spec):
    results = []
    client_info = types.Implementation(name="cache-test-client", version="1.0")
    async with Client(spec["url"], mode=spec["mode"], client_info=client_info, cache=None) as client:
        for step in spec["steps"]:
            try:
                results.append(await run_step(client, step))
            except MCPError as error:
                results.append({"error": {"code": error.code, "message": error.message}})
        print(json.dumps({"protocol_version": client.protocol_version, "results": results}))


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
