"""Runs the official Python SDK's session client against several bridge replicas in turn, the
way a round-robin load balancer with no affinity would send its requests: every HTTP request
(initialize, notifications, calls, the GET stream, the closing DELETE) goes to the next
replica's port. Prints one JSON line with what happened.

Usage: replica_client.py SPEC_JSON, where SPEC_JSON is an object with
  url     the MCP endpoint on the first replica (its port is replaced per request),
  ports   the replicas' ports, in the order requests rotate through them,
  bearer  optional; sent as `Authorization: Bearer ...` on every request,
  calls   how many `tools/call` of `tool` to make,
  tool    the tool to call (no arguments).

The printed object has the negotiated protocol_version, the `is_error` of each call, the
text of the first call, the log level set, and `sent`: each request's method and the port it
went to.
"""

import itertools
import json
import sys

import anyio
import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next port in turn, like a balancer without affinity."""

    def __init__(self, ports):
        self.inner = httpx2.AsyncHTTPTransport()
        self.ports = itertools.cycle(ports)
        self.sent = []

    async def handle_async_request(self, request):
        port = next(self.ports)
        request.url = request.url.copy_with(port=port)
        self.sent.append([request.method, port])
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


async def main(spec):
    balancer = RoundRobin(spec["ports"])
    headers = {}
    if spec.get("bearer"):
        headers["authorization"] = f"Bearer {spec['bearer']}"
    timeout = httpx2.Timeout(30.0, read=300.0)
    calls = []
    first_text = None
    async with httpx2.AsyncClient(transport=balancer, headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(spec["url"], http_client=http)
        options = {
            "mode": "legacy",
            "client_info": types.Implementation(name="replica-client", version="1.0"),
        }
        async with Client(transport, **options) as client:
            protocol_version = client.protocol_version
            await client.set_logging_level("warning")
            for _ in range(spec["calls"]):
                try:
                    result = await client.call_tool(spec["tool"], {})
                except MCPError as error:
                    calls.append({"error": {"code": error.code, "message": error.message}})
                    continue
                calls.append(result.is_error)
                if first_text is None and result.content:
                    first_text = getattr(result.content[0], "text", None)
    print(
        json.dumps(
            {
                "protocol_version": protocol_version,
                "calls": calls,
                "first_text": first_text,
                "sent": balancer.sent,
            }
        )
    )


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
