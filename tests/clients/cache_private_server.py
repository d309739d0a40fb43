"""A stdio MCP server whose read-only results are private, for the cache tests.

It uses only the standard library and answers `initialize`, `ping`, `tools/list` and
`tools/call`. Its one tool, `whoami` (annotated `readOnlyHint: true`), answers with a
counter that grows by one per call this process receives, and marks the result
`"cacheScope": "private"`: a result meant for one principal only. A cache that hands one
principal's `whoami` answer to another shows up as a counter the second principal was
never given by the server.

Every `tools/call` it receives is appended to `--calls-log` as "<pid> <tool>", like the
demo server's flag of the same name. With `--delay-ms N`, each `whoami` answers N
milliseconds after it arrives (calls are handled one at a time), so callers can be in
flight together.
"""

import argparse
import json
import os
import sys
import time

TOOLS = [
    {
        "name": "whoami",
        "description": "Returns a per-call counter in a result marked private.",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    },
]


def send(message):
    sys.stdout.write(json.dumps(message))
    sys.stdout.write("\n")
    sys.stdout.flush()


def log_call(path, tool):
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {tool}\n")


class Server:
    def __init__(self, options):
        self.options = options
        self.calls = 0

    def call_tool(self, request_id, params):
        name = params.get("name")
        log_call(self.options.calls_log, name)
        if name != "whoami":
            error = {"code": -32602, "message": f"unknown tool {name}"}
            send({"jsonrpc": "2.0", "id": request_id, "error": error})
            return
        self.calls += 1
        time.sleep(self.options.delay_ms / 1000)
        payload = {"call": self.calls, "pid": os.getpid()}
        result = {
            "content": [{"type": "text", "text": json.dumps(payload)}],
            "structuredContent": payload,
            "cacheScope": "private",
        }
        send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def handle(self, message):
        method = message.get("method")
        request_id = message.get("id")
        if request_id is None:
            return  # A notification: nothing to answer.
        if method == "initialize":
            requested = (message.get("params") or {}).get("protocolVersion", "2025-06-18")
            result = {
                "protocolVersion": requested,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "cache-private-server", "version": "1"},
            }
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            self.call_tool(request_id, message.get("params") or {})
        else:
            error = {"code": -32601, "message": f"method not found: {method}"}
            send({"jsonrpc": "2.0", "id": request_id, "error": error})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls-log")
    parser.add_argument("--delay-ms", type=int, default=0)
    server = Server(parser.parse_args())
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict):
            server.handle(message)


if __name__ == "__main__":
    main()
