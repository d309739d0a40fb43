"""Connects the official Python `mcp` SDK to the bridge with credentials and runs MCP steps,
printing what happened as one JSON line, for the identity tests.

Usage: auth_oauth_client.py SPEC_JSON, where SPEC_JSON is an object with
  url     the MCP endpoint (Streamable HTTP),
  mode    "legacy", "auto" or "2026-07-28" (the SDK's connect modes; default "legacy"),
  bearer  optional; a token sent as `Authorization: Bearer` on every request through the
          HTTP client's headers. Without it the SDK's OAuth client (`OAuthClientProvider`)
          starts with no token and must find its own way: the 401's
          `WWW-Authenticate: ... resource_metadata=...`, the protected-resource metadata,
          the authorization server's metadata, dynamic registration, the authorization
          code flow with PKCE (the redirect is followed with a plain GET, no browser) and
          the token exchange,
  steps   the operations to run, as tests/clients/proto_client.py takes them.

The printed object has the negotiated protocol_version, one result per step (a JSON-RPC
error is recorded as {"error": {...}} and the next step runs), and "http": every request
the HTTP client sent, as [METHOD, URL, STATUS], in order - the discovery requests included.
When connecting fails, it prints {"error": MESSAGE, "http": [...]} and exits with status 1.
"""

import json
import sys
import warnings
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
from mcp import Client, types
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from proto_client import run_step

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# Where the authorization server sends the browser back. Nothing listens there: the redirect
# handler reads the code from the Location header instead of following it.
REDIRECT_URI = "http://127.0.0.1:9/callback"

# Every request the HTTP client sent, with its answer's status.
EXCHANGES = []


class MemoryStorage:
    """Tokens and the registration, kept for this run only."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Browser:
    """Stands in for the user's browser: follows the authorization URL with one GET and keeps
    the code and state the authorization server redirects back with."""

    def __init__(self):
        self.redirect = None

    async def open(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as client:
            response = await client.get(authorization_url)
        EXCHANGES.append(["GET", authorization_url.split("?")[0], response.status_code])
        if response.status_code not in (302, 303):
            raise RuntimeError(f"authorize answered {response.status_code}: {response.text}")
        self.redirect = response.headers["location"]

    async def callback(self) -> AuthorizationCodeResult:
        query = parse_qs(urlparse(self.redirect).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0])


async def record(response):
    EXCHANGES.append([response.request.method, str(response.request.url), response.status_code])


def http_client(spec):
    """The HTTP client the transport uses: with a fixed bearer header, or with the OAuth flow."""
    hooks = {"response": [record]}
    timeout = httpx2.Timeout(30, read=60)
    if spec.get("bearer"):
        headers = {"Authorization": f"Bearer {spec['bearer']}"}
        return httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks)
    browser = Browser()
    metadata = OAuthClientMetadata(
        client_name="mcp-bridge auth test",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    provider = OAuthClientProvider(
        server_url=spec["url"],
        client_metadata=metadata,
        storage=MemoryStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    return httpx2.AsyncClient(auth=provider, timeout=timeout, event_hooks=hooks)


async def main(spec):
    results = []
    async with http_client(spec) as client:
        transport = streamable_http_client(spec["url"], http_client=client)
        options = {
            "mode": spec.get("mode", "legacy"),
            "client_info": types.Implementation(name="auth-client", version="1.0"),
            "cache": None,
        }
        async with Client(transport, **options) as session:
            for step in spec["steps"]:
                try:
                    results.append(await run_step(session, step))
                except MCPError as error:
                    results.append({"error": {"code": error.code, "message": error.message}})
            version = session.protocol_version
    print(json.dumps({"protocol_version": version, "results": results, "http": EXCHANGES}))


def innermost(error):
    """The first leaf of an exception group: what actually failed."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    try:
        anyio.run(main, json.loads(sys.argv[1]))
    except Exception as error:  # Reported with the exchanges so far, for the test's message.
        failure = innermost(error)
        print(json.dumps({"error": f"{type(failure).__name__}: {failure}", "http": EXCHANGES}))
        sys.exit(1)
