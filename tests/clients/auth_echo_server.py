"""A stdio MCP server that writes down every byte the bridge sends it, for the identity tests:
whatever credential a client presented must never appear in what reaches a backend.

It uses only the standard library and answers `initialize`, `ping`, `tools/list` and
`tools/call`. Its one tool, `echo` (read-only), answers with the arguments and `_meta` it
received. Every line read from stdin is appended, as received, to the file named by `--log`.
"""

import argparse
import json
import sys

TOOLS = [
    {
        "name": "echo",
        "description": "Answers with the arguments and _meta it received.",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    },
]


def send(message):
    sys.stdout.write(json.dumps(message))
    sys.stdout.write("\n")
    sys.stdout.flush()


def answer(message):
    method = message.get("method")
    request_id = message.get("id")
    params = message.get("params") or {}
    if request_id is None:
        return  # A notification: nothing to answer.
    if method == "initialize":
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "auth-echo-server", "version": "1"},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call" and params.get("name") == "echo":
        received = {"arguments": params.get("arguments"), "meta": params.get("_meta")}
        result = {"content": [{"type": "text", "text": json.dumps(received)}], "structuredContent": received}
    else:
        error = {"code": -32601, "message": f"not supported: {method}"}
        send({"jsonrpc": "2.0", "id": request_id, "error": error})
        return
    send({"jsonrpc": "2.0", "id": request_id, "result": result})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True)
    options = parser.parse_args()
    with open(options.log, "a", encoding="utf-8") as log:
        for line in sys.stdin:
            log.write(line)
            log.flush()
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(message, dict):
                answer(message)


if __name__ == "__main__":
    main()
