"""A fault-injecting stdio MCP server for the bridge's fault and lifecycle tests.

It uses only the standard library. It answers `initialize`, `ping`, `tools/list` and
`tools/call` like a well-behaved server, and misbehaves on demand:

* `--ignore-ping`: never answers `ping`, as a hung server would not.
* tool `noise`: before its real answer, writes a line that is not JSON, a JSON value that
  is not JSON-RPC, a response to a request id the bridge never sent, and one line of
  `--big-line-bytes` bytes (default 20 MB); then answers normally.
* tool `oversized`: answers with a single response line of `--big-line-bytes` bytes.
* tool `echo`: answers `{"pid": <pid>, "echo": <arguments>}` at once.

Every `tools/call` it receives is appended to `--calls-log` as "<pid> <tool>", like the
demo server's flag of the same name.
"""

import argparse
import json
import os
import sys

TOOLS = [
    {
        "name": "echo",
        "description": "Returns its arguments and the server's pid.",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "noise",
        "description": "Writes garbage lines to stdout before answering.",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": False},
    },
    {
        "name": "oversized",
        "description": "Answers with one line longer than any sane limit.",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": False},
    },
]


def write_line(text):
    sys.stdout.write(text)
    sys.stdout.write("\n")
    sys.stdout.flush()


def send(message):
    write_line(json.dumps(message))


def result(request_id, value):
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def tool_result(request_id, payload):
    result(
        request_id,
        {
            "content": [{"type": "text", "text": json.dumps(payload)}],
            "structuredContent": payload,
        },
    )


def log_call(path, tool):
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {tool}\n")


def call_tool(options, request_id, params):
    name = params.get("name")
    arguments = params.get("arguments") or {}
    log_call(options.calls_log, name)
    if name == "echo":
        tool_result(request_id, {"pid": os.getpid(), "echo": arguments})
    elif name == "noise":
        write_line("this line is not JSON at all {")
        write_line("[1, 2, 3]")
        send({"jsonrpc": "2.0", "id": 987654321, "result": {"stale": True}})
        write_line("x" * options.big_line_bytes)
        tool_result(request_id, {"pid": os.getpid(), "noise": "done"})
    elif name == "oversized":
        tool_result(request_id, {"pid": os.getpid(), "blob": "y" * options.big_line_bytes})
    else:
        send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32602, "message": f"unknown tool {name}"},
            }
        )


def handle(options, message):
    method = message.get("method")
    request_id = message.get("id")
    if request_id is None:
        return  # A notification: nothing to answer.
    if method == "initialize":
        requested = (message.get("params") or {}).get("protocolVersion", "2025-06-18")
        result(
            request_id,
            {
                "protocolVersion": requested,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fault-server", "version": "1"},
            },
        )
    elif method == "ping":
        if not options.ignore_ping:
            result(request_id, {})
    elif method == "tools/list":
        result(request_id, {"tools": TOOLS})
    elif method == "tools/call":
        call_tool(options, request_id, message.get("params") or {})
    else:
        send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32601, "message": f"method not found: {method}"},
            }
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignore-ping", action="store_true")
    parser.add_argument("--big-line-bytes", type=int, default=20 * 1024 * 1024)
    parser.add_argument("--calls-log")
    options = parser.parse_args()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict):
            handle(options, message)


if __name__ == "__main__":
    main()
