"""Calls one tool through the bridge as an MCP 2026-07-28 client with the official Python
SDK, answering the multi-round-trip ("input_required", SEP-2322) rounds the call takes, and
prints what happened as one JSON line, for the MRTR integration tests.

How the rounds are driven: by the SDK itself. In mcp 2.3.0, `Client.call_tool`
(mcp/client/client.py) hands an `InputRequiredResult` to `run_input_required_driver`
(mcp/client/_input_required.py): it runs every entry of `inputRequests` through the
client's elicitation / sampling callbacks (concurrently, the entry's key passed as
`context.request_id`) and re-sends `tools/call` with the same name, arguments and `_meta`, a
new JSON-RPC id, `inputResponses` (same keys) and the `requestState` echoed byte for byte,
until a complete result comes back (at most `input_required_max_rounds` rounds). With
"manual": true the script drives the same rounds itself through the SDK's lower-level API
instead (`client.session.call_tool(..., allow_input_required=True)` and
`client.session.dispatch_input_request`), which also reports each round's shape and lets a
test tamper with `requestState` or leave `inputResponses` out.

Usage: mrtr_client.py SPEC_JSON, where SPEC_JSON is an object with
  url          the MCP endpoint (Streamable HTTP),
  tool         the tool to call, args its arguments (default {}),
  mode         the SDK connect mode (default "2026-07-28"),
  elicitation  optional {"action": "accept"|"decline"|"cancel", "content": {...}}: the
               elicitation callback answers every request with it; null or absent means no
               callback, so the client does not declare the elicitation capability,
  sampling     optional string: a sampling callback answers every request with this text,
  max_rounds   optional cap on input_required rounds (the SDK's default is 10),
  manual       optional; when true, drive the rounds explicitly (see above),
  tamper_state optional, manual only: append "x" to requestState on the first retry,
  omit_responses optional, manual only: retry the first round without inputResponses.

The printed object has:
  protocol_version  the negotiated version,
  result            {"content", "text", "structured", "is_error"} of the final result, or
  error             {"code", "message", "data"} when the call failed with a JSON-RPC error
                    (or {"rounds_exceeded": N} when the server kept asking),
  elicitations      how many times the elicitation callback ran,
  elicited          the message of each elicitation request, in order,
  elicit_params     each elicitation request's params as received (JSON),
  sampled           the prompt text of each sampling request,
  input_keys        the inputRequests key of each callback run (its context.request_id),
  rounds            manual only: one {"requests": {key: method}, "request_state": bool}
                    per input_required result received.
"""

import json
import sys
import warnings

import anyio
from mcp import Client, types
from mcp.client._input_required import InputRequiredRoundsExceededError
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# Sampling is deprecated in 2026-07-28 but still carried by MRTR; keep stderr quiet.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# What the callbacks received, reported with the result.
ELICITED = []
ELICIT_PARAMS = []
SAMPLED = []
INPUT_KEYS = []


def as_json(model):
    """A pydantic model from the SDK as plain wire JSON."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def make_elicitation_callback(answer):
    """An elicitation callback answering every request with `answer` (action and content)."""
    action = answer.get("action", "accept")
    content = answer.get("content") if action == "accept" else None

    async def elicitation_callback(context, params):
        INPUT_KEYS.append(context.request_id)
        ELICITED.append(params.message)
        ELICIT_PARAMS.append(as_json(params))
        return types.ElicitResult(action=action, content=content)

    return elicitation_callback


def make_sampling_callback(reply):
    """A sampling callback answering every request with `reply`."""

    async def sampling_callback(context, params):
        INPUT_KEYS.append(context.request_id)
        content = params.messages[0].content
        prompt = getattr(content, "text", None)
        if prompt is None and isinstance(content, list) and content:
            prompt = getattr(content[0], "text", "")
        SAMPLED.append(prompt)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=reply),
            model="mrtr-test-model",
            stop_reason="endTurn",
        )

    return sampling_callback


def result_json(result):
    """A final CallToolResult as plain JSON."""
    return {
        "content": [as_json(block) for block in result.content],
        "text": [getattr(block, "text", None) for block in result.content],
        "structured": result.structured_content,
        "is_error": result.is_error,
    }


async def call_manually(client, spec, rounds):
    """Drives the input_required rounds of one call with the SDK's lower-level API."""
    session = client.session
    name, args = spec["tool"], spec.get("args", {})
    max_rounds = spec.get("max_rounds", 10)
    result = await session.call_tool(name, args, allow_input_required=True)
    retries = 0
    while isinstance(result, types.InputRequiredResult):
        requests = result.input_requests or {}
        rounds.append({"requests": {key: req.method for key, req in requests.items()},
                       "request_state": result.request_state is not None})
        if retries >= max_rounds:
            raise InputRequiredRoundsExceededError(max_rounds)
        responses = {}
        for key, req in requests.items():
            meta = req.params.meta if req.params is not None else None
            context = ClientRequestContext(session=session, request_id=key, meta=meta)
            answer = await session.dispatch_input_request(context, req)
            if isinstance(answer, types.ErrorData):
                raise MCPError.from_error_data(answer)
            responses[key] = answer
        state = result.request_state
        if retries == 0 and spec.get("tamper_state") and state is not None:
            state += "x"
        if retries == 0 and spec.get("omit_responses"):
            responses = {}
        retries += 1
        result = await session.call_tool(
            name, args, input_responses=responses or None, request_state=state, allow_input_required=True
        )
    return result


async def main(spec):
    options = {
        "mode": spec.get("mode", "2026-07-28"),
        "client_info": types.Implementation(name="mrtr-client", version="1.0"),
        "cache": None,
    }
    if spec.get("elicitation") is not None:
        options["elicitation_callback"] = make_elicitation_callback(spec["elicitation"])
    if spec.get("sampling") is not None:
        options["sampling_callback"] = make_sampling_callback(spec["sampling"])
    if spec.get("max_rounds") is not None:
        options["input_required_max_rounds"] = spec["max_rounds"]
    report = {}
    rounds = []
    async with Client(spec["url"], **options) as client:
        try:
            if spec.get("manual"):
                result = await call_manually(client, spec, rounds)
            else:
                result = await client.call_tool(spec["tool"], spec.get("args", {}))
            report["result"] = result_json(result)
        except MCPError as error:
            report["error"] = {"code": error.code, "message": error.message, "data": error.data}
        except InputRequiredRoundsExceededError as error:
            report["error"] = {"rounds_exceeded": error.max_rounds}
        report["protocol_version"] = client.protocol_version
    report.update(
        {
            "elicitations": len(ELICITED),
            "elicited": ELICITED,
            "elicit_params": ELICIT_PARAMS,
            "sampled": SAMPLED,
            "input_keys": INPUT_KEYS,
        }
    )
    if spec.get("manual"):
        report["rounds"] = rounds
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
