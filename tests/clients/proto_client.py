"""Runs a list of MCP operations against one endpoint with the official Python SDK and
prints what happened as one JSON line, for the protocol integration tests.

Usage: proto_client.py SPEC_JSON, where SPEC_JSON is an object with
  url       the MCP endpoint (Streamable HTTP),
  mode      "legacy", "auto" or "2026-07-28" (the SDK's connect modes),
  sampling  optional; when true, a sampling callback answers "sampled: <prompt>",
  elicitation optional; when true, an elicitation callback declines every request
            (its messages are reported as "elicited"),
  log_level optional; the 2026-07-28 per-request log opt-in (a logging callback is
            always installed, and the messages it receives are reported as "logs"),
  steps     a list of operations, each an object with "op" and its arguments:
            {"op": "list_tools"}
            {"op": "call", "tool": NAME, "args": {...}, "progress": true|false}
            {"op": "list_resources"}
            {"op": "read_resource", "uri": URI}
            {"op": "list_prompts"}
            {"op": "get_prompt", "name": NAME, "args": {...}}
            {"op": "set_logging_level", "level": LEVEL}   (legacy sessions only)

The printed object has the negotiated protocol_version, the server's name (or null), one
result per step, and what the callbacks saw ("sampled", "elicited", "logs"). A step that
fails with a JSON-RPC error records {"error": {"code": ..., "message": ...}} and the script
goes on with the next step.
"""

import json
import sys
import warnings

import anyio
from mcp import Client, types
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# Logging and sampling are deprecated in 2026-07-28 but still tested; keep stderr quiet.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# What the callbacks received, reported with the results.
SAMPLED = []
LOGS = []
ELICITED = []


async def sampling_callback(context, params):
    """Answers a server's sampling request with a reply built from the prompt."""
    content = params.messages[0].content
    prompt = getattr(content, "text", None)
    if prompt is None and isinstance(content, list) and content:
        prompt = getattr(content[0], "text", "")
    SAMPLED.append(prompt)
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"sampled: {prompt}"),
        model="proto-test-model",
        stop_reason="endTurn",
    )


async def elicitation_callback(context, params):
    """Declines a server's elicitation request, recording what it asked."""
    ELICITED.append(params.message)
    return types.ElicitResult(action="decline")


async def logging_callback(params):
    """Records every log message the server sends."""
    LOGS.append([params.level, params.data])


def content_json(block):
    """A content block as plain JSON."""
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run_step(client, step):
    """Runs one step and returns its result as plain JSON."""
    op = step["op"]
    if op == "list_tools":
        listing = await client.list_tools()
        return {"tools": [tool.name for tool in listing.tools]}
    if op == "call":
        progress = []

        async def on_progress(value, total, message):
            progress.append([value, total, message])

        callback = on_progress if step.get("progress") else None
        result = await client.call_tool(step["tool"], step.get("args", {}), progress_callback=callback)
        return {
            "content": [content_json(block) for block in result.content],
            "text": [getattr(block, "text", None) for block in result.content],
            "structured": result.structured_content,
            "is_error": result.is_error,
            "progress": progress,
        }
    if op == "list_resources":
        listing = await client.list_resources()
        return {"resources": [{"uri": str(item.uri), "name": item.name} for item in listing.resources]}
    if op == "read_resource":
        read = await client.read_resource(step["uri"])
        return {
            "contents": [
                {"uri": str(item.uri), "text": getattr(item, "text", None), "mime_type": item.mime_type}
                for item in read.contents
            ]
        }
    if op == "list_prompts":
        listing = await client.list_prompts()
        return {"prompts": [prompt.name for prompt in listing.prompts]}
    if op == "get_prompt":
        prompt = await client.get_prompt(step["name"], step.get("args"))
        return {
            "messages": [
                {"role": message.role, "text": getattr(message.content, "text", None)} for message in prompt.messages
            ]
        }
    if op == "set_logging_level":
        await client.set_logging_level(step["level"])
        return {}
    raise ValueError(f"unknown op {op!r}")


async def main(spec):
    options = {
        "mode": spec["mode"],
        "client_info": types.Implementation(name="proto-client", version="1.0"),
        "logging_callback": logging_callback,
    }
    if spec.get("log_level"):
        options["log_level"] = spec["log_level"]
    if spec.get("sampling"):
        options["sampling_callback"] = sampling_callback
    if spec.get("elicitation"):
        options["elicitation_callback"] = elicitation_callback
    results = []
    async with Client(spec["url"], **options) as client:
        server_info = client.server_info
        for step in spec["steps"]:
            try:
                results.append(await run_step(client, step))
            except MCPError as error:
                results.append({"error": {"code": error.code, "message": error.message}})
        report = {
            "protocol_version": client.protocol_version,
            "server_name": server_info.name if server_info is not None else None,
            "results": results,
            "sampled": SAMPLED,
            "logs": LOGS,
            "elicited": ELICITED,
        }
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
