//! 2026-07-28 multi-round-trip requests in front of legacy backends.
//!
//! A 2026-07-28 client has no session, so a backend's server-to-client request
//! (`elicitation/create`, `sampling/createMessage`) cannot reach it as a request. Instead
//! the bridge parks the backend call, still holding its process (and lease), and answers the
//! client with an `input_required` result whose `requestState` names the parked call. The
//! client's retry (same tool and arguments, plus `inputResponses` and that `requestState`)
//! is matched back to the very call and process that asked: the bridge sends the client's
//! answer to the backend as the response to its request and carries on with the call, which
//! may end in its result or in another round. Whatever the server's isolation, the state
//! names one parked call on this replica, so the retry cannot reach another process.
//!
//! Bounded: parked calls per principal and in total, each for at most
//! [`PARKED_CALL_TTL`] (dropping one cancels its backend call). A `requestState` is 128
//! random bits: unguessable, single use, and valid only for the principal, endpoint, tool
//! and arguments it was issued for; anything else is refused as the spec asks, without
//! saying which check failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use mcp_bridge_jsonrpc::{self as jsonrpc, code};
use mcp_bridge_upstream::{AnswerSink, CallEvent, ForwardedCall, Step};

use super::AppState;
use super::mcp::Answering;
use super::stateless;

/// Calls parked at once on this replica.
pub(crate) const MAX_PARKED_CALLS: usize = 1024;
/// Calls one principal may have parked at once.
pub(crate) const MAX_PARKED_PER_PRINCIPAL: usize = 16;
/// How long a parked call waits for the client's retry before it is cancelled. The
/// backend call's own `request_timeout` still applies when it resumes.
pub(crate) const PARKED_CALL_TTL: Duration = Duration::from_secs(10 * 60);
/// The key of the one input request a round carries.
pub(crate) const INPUT_KEY: &str = "input";
/// `requestState` values the bridge issues start with this.
const STATE_PREFIX: &str = "mcp-bridge-input-";

/// Server requests a 2026-07-28 client can answer through an input round, with the
/// client capability each needs.
const ROUND_METHODS: [(&str, &str); 2] = [
    ("elicitation/create", "elicitation"),
    ("sampling/createMessage", "sampling"),
];

/// Whether a backend's request can become an input round: `Ok(true)` when the client
/// declared the capability it needs, `Ok(false)` for a method rounds do not carry, and
/// `Err` naming the capability the client did not declare.
pub(crate) fn can_ask(request: &Value, capabilities: Option<&Value>) -> Result<bool, &'static str> {
    let method = jsonrpc::method(request).unwrap_or_default();
    let Some((_, capability)) = ROUND_METHODS.iter().find(|(name, _)| *name == method) else {
        return Ok(false);
    };
    let declared = capabilities
        .and_then(|capabilities| capabilities.get(*capability))
        .is_some();
    if declared { Ok(true) } else { Err(capability) }
}

/// What a parked call is bound to: the retry must repeat it.
pub(crate) fn binding_of(endpoint: &str, server: &str, message: &Value) -> [u8; 32] {
    let method = jsonrpc::method(message).unwrap_or_default();
    let params = message.get("params");
    let target = params
        .and_then(|params| params.get("name").or_else(|| params.get("uri")))
        .cloned()
        .unwrap_or(Value::Null);
    let arguments = params
        .and_then(|params| params.get("arguments"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut digest = Sha256::new();
    for part in [
        endpoint,
        server,
        method,
        &target.to_string(),
        &arguments.to_string(),
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize().into()
}

/// A backend call waiting for its client's answer to the backend's request.
pub(crate) struct Parked {
    pub(crate) call: Box<dyn ForwardedCall>,
    /// The way back to the process that asked.
    pub(crate) answer: Arc<dyn AnswerSink>,
    /// The backend's request (its own id, method and params).
    pub(crate) request: Value,
    pub(crate) owner: Arc<str>,
    pub(crate) binding: [u8; 32],
    /// When it is cancelled if the client has not come back: [`PARKED_CALL_TTL`] after it
    /// was parked, or the call's own deadline if sooner.
    pub(crate) expires: Instant,
}

/// The `input_required` answer that asks the client what the backend's `request` asked.
pub(crate) fn input_required(client_id: Value, request: &Value, state: &str) -> Value {
    let method = jsonrpc::method(request).unwrap_or_default();
    let params = request.get("params").cloned().unwrap_or(json!({}));
    jsonrpc::result_response(
        client_id,
        json!({
            "resultType": "input_required",
            "inputRequests": { INPUT_KEY: { "method": method, "params": params } },
            "requestState": state,
        }),
    )
}

/// Why a call could not be parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkRefusal {
    Full,
    PrincipalFull,
}

impl ParkRefusal {
    /// The error the backend gets for its request instead of the client's answer.
    pub(crate) fn answer_for(self, request: &Value) -> Value {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let why = match self {
            ParkRefusal::Full => {
                format!("the bridge already waits on {MAX_PARKED_CALLS} clients' input")
            }
            ParkRefusal::PrincipalFull => format!(
                "this principal already has {MAX_PARKED_PER_PRINCIPAL} calls waiting for its input"
            ),
        };
        jsonrpc::error_response(id, code::INTERNAL_ERROR, why, None)
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            ParkRefusal::Full => "full",
            ParkRefusal::PrincipalFull => "principal_full",
        }
    }
}

/// The parked calls of this replica.
pub(crate) struct InputRounds {
    parked: Mutex<HashMap<String, Parked>>,
    /// `mcp_bridge_input_rounds_total{outcome="expired"}`.
    expired: prometheus::IntCounter,
}

impl InputRounds {
    pub(crate) fn new(expired: prometheus::IntCounter) -> InputRounds {
        InputRounds {
            parked: Mutex::default(),
            expired,
        }
    }

    /// Drops calls past their expiry (dropping a call cancels it on its server).
    fn drop_expired(&self, calls: &mut HashMap<String, Parked>) {
        let before = calls.len();
        let now = Instant::now();
        calls.retain(|_, held| held.expires > now);
        self.expired.inc_by((before - calls.len()) as u64);
    }

    /// Parks a call and returns the `requestState` that names it.
    pub(crate) fn park(&self, parked: Parked) -> Result<String, Box<(ParkRefusal, Parked)>> {
        let mut calls = self.parked.lock();
        // Expired calls make room first.
        self.drop_expired(&mut calls);
        if calls.len() >= MAX_PARKED_CALLS {
            return Err(Box::new((ParkRefusal::Full, parked)));
        }
        let owned = calls
            .values()
            .filter(|held| held.owner == parked.owner)
            .count();
        if owned >= MAX_PARKED_PER_PRINCIPAL {
            return Err(Box::new((ParkRefusal::PrincipalFull, parked)));
        }
        let state = format!("{STATE_PREFIX}{:032x}", rand::random::<u128>());
        calls.insert(state.clone(), parked);
        Ok(state)
    }

    /// Takes the call `state` names, if it is this caller's, for this request, and has
    /// not expired. Taking it is what makes a state single use.
    pub(crate) fn take(&self, state: &str, owner: &str, binding: &[u8; 32]) -> Option<Parked> {
        let mut calls = self.parked.lock();
        let held = calls.get(state)?;
        let matches =
            *held.owner == *owner && held.binding == *binding && held.expires > Instant::now();
        if !matches {
            return None;
        }
        calls.remove(state)
    }

    /// Cancels calls whose client never came back.
    pub(crate) fn prune(&self) {
        let mut calls = self.parked.lock();
        self.drop_expired(&mut calls);
    }
}

/// When a call parked now expires: after [`PARKED_CALL_TTL`], or at its own deadline if
/// sooner (resuming it later could only time out).
fn expiry(deadline: Option<Instant>) -> Instant {
    let longest = Instant::now() + PARKED_CALL_TTL;
    deadline.map_or(longest, |deadline| deadline.min(longest))
}

/// The error for a `requestState` the bridge cannot resume: unknown, used, expired, or
/// issued to another principal or for another request. It does not say which.
pub(crate) fn invalid_state(client_id: Value) -> Value {
    jsonrpc::error_response(
        client_id,
        code::INVALID_PARAMS,
        "Invalid or expired requestState: send the original request again, without \
         requestState and inputResponses, to start over",
        Some(json!({ "reason": "invalid_request_state" })),
    )
}

/// How a backend's request during a 2026-07-28 call is settled: `None` when the client
/// declared what it needs and must be asked in a round; otherwise the bridge's own answer
/// (empty roots, or a refusal naming the capability the client did not declare).
pub(crate) fn settle(
    state: &AppState,
    request: &Value,
    capabilities: Option<&Value>,
) -> Option<Value> {
    match can_ask(request, capabilities) {
        Ok(true) => None,
        Ok(false) => Some(stateless::answer_server_request(request)),
        Err(capability) => {
            state
                .metrics
                .input_rounds_total
                .with_label_values(&["missing_capability"])
                .inc();
            Some(missing_capability(request, capability))
        }
    }
}

/// The answer a backend gets for a request the client did not declare the capability for.
pub(crate) fn missing_capability(request: &Value, capability: &str) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = jsonrpc::method(request).unwrap_or_default();
    jsonrpc::error_response(
        id,
        code::METHOD_NOT_FOUND,
        format!(
            "the client (MCP 2026-07-28) did not declare the '{capability}' capability, so it \
             cannot answer '{method}'"
        ),
        None,
    )
}

/// What a 2026-07-28 request's rounds are bound to.
pub(crate) struct RoundContext {
    /// The endpoint, tool and arguments a retry must repeat; `None` for a request that can neither start a round (its client declared neither
    /// elicitation nor sampling) nor resume one: hashing its arguments would be wasted.
    pub(crate) binding: Option<[u8; 32]>,
    /// What the client declared it can answer (`_meta` clientCapabilities).
    pub(crate) capabilities: Option<Value>,
}

impl RoundContext {
    /// The round context of a 2026-07-28 request to `server` on `endpoint`.
    pub(crate) fn of(endpoint: &str, server: &str, message: &Value) -> RoundContext {
        let capabilities = stateless::client_capabilities(message).cloned();
        let may_answer = capabilities.as_ref().is_some_and(|declared| {
            ROUND_METHODS
                .iter()
                .any(|(_, capability)| declared.get(*capability).is_some())
        });
        let resumes = message.pointer("/params/requestState").is_some();
        RoundContext {
            binding: (may_answer || resumes).then(|| binding_of(endpoint, server, message)),
            capabilities,
        }
    }
}

/// Resumes the call a 2026-07-28 retry's `requestState` names: the client's answer goes to
/// the process that asked, as the response to its request, and the call carries on to its
/// result or to another round. A state that is unknown, used, expired, or another
/// principal's or request's is refused without saying which.
pub(crate) async fn resume(
    state: &AppState,
    answering: &Answering,
    round: &RoundContext,
    message: &Value,
    client_id: Value,
) -> Value {
    let params = message.get("params");
    let request_state = params
        .and_then(|params| params.get("requestState"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let owner = &answering.caller.principal.name;
    let Some(parked) =
        state
            .input_rounds
            .take(request_state, owner, &round.binding.unwrap_or_default())
    else {
        state
            .metrics
            .input_rounds_total
            .with_label_values(&["invalid_state"])
            .inc();
        return invalid_state(client_id);
    };
    let Parked {
        call,
        answer,
        request,
        ..
    } = parked;
    let response = params
        .and_then(|params| params.get("inputResponses"))
        .and_then(|responses| responses.get(INPUT_KEY))
        .filter(|response| response.is_object())
        .cloned();
    let Some(response) = response else {
        // No usable answer: the client is asked again, as the spec advises.
        return match park_for_input(
            state,
            answering,
            Some(round),
            call,
            request,
            answer,
            client_id.clone(),
        )
        .await
        {
            Ok(asked) => asked,
            Err(call) => drive_resumed(state, answering, round, call, client_id).await,
        };
    };
    state
        .metrics
        .input_rounds_total
        .with_label_values(&["resumed"])
        .inc();
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if let Err(error) = answer.send(&jsonrpc::result_response(id, response)).await {
        // The process is gone; the call reports that when it is driven.
        tracing::debug!(%error, "could not deliver a client's input to its server");
    }
    drive_resumed(state, answering, round, call, client_id).await
}

/// Drives a resumed call to its answer (plain JSON: notifications are dropped); a further
/// request the client must answer parks it again.
async fn drive_resumed(
    state: &AppState,
    answering: &Answering,
    round: &RoundContext,
    mut call: Box<dyn ForwardedCall>,
    client_id: Value,
) -> Value {
    loop {
        let (request, answer) = match call.next().await {
            Step::Done(outcome) => return answering.answer(outcome, client_id, call.cache_hint()),
            Step::Event(CallEvent::Notification(_)) => continue,
            Step::Event(CallEvent::ServerRequest { request, answer }) => (request, answer),
        };
        let Some(settled) = settle(state, &request, round.capabilities.as_ref()) else {
            match park_for_input(
                state,
                answering,
                Some(round),
                call,
                request,
                answer,
                client_id.clone(),
            )
            .await
            {
                Ok(asked) => return asked,
                Err(returned) => {
                    call = returned;
                    continue;
                }
            }
        };
        if let Err(error) = answer.send(&settled).await {
            tracing::debug!(%error, "could not answer a server request");
        }
    }
}

/// Parks `call` until its 2026-07-28 client answers `request`, and returns the
/// `input_required` answer; at the bounds the backend is told why instead and the call
/// comes back to be driven on.
pub(crate) async fn park_for_input(
    state: &AppState,
    answering: &Answering,
    round: Option<&RoundContext>,
    call: Box<dyn ForwardedCall>,
    request: Value,
    answer: Arc<dyn AnswerSink>,
    client_id: Value,
) -> Result<Value, Box<dyn ForwardedCall>> {
    let expires = expiry(call.deadline());
    let parked = Parked {
        call,
        answer,
        request,
        owner: answering.caller.principal.name.clone(),
        binding: round.and_then(|round| round.binding).unwrap_or_default(),
        expires,
    };
    let asking = parked.request.clone();
    match state.input_rounds.park(parked) {
        Ok(request_state) => {
            state
                .metrics
                .input_rounds_total
                .with_label_values(&["asked"])
                .inc();
            Ok(input_required(client_id, &asking, &request_state))
        }
        Err(refused) => {
            let (refusal, parked) = *refused;
            state
                .metrics
                .input_rounds_total
                .with_label_values(&[refusal.label()])
                .inc();
            let refused = refusal.answer_for(&parked.request);
            if let Err(error) = parked.answer.send(&refused).await {
                tracing::debug!(%error, "could not answer a server request");
            }
            Err(parked.call)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_capabilities_make_rounds() {
        let elicit = json!({"jsonrpc":"2.0","id":3,"method":"elicitation/create","params":{}});
        assert_eq!(
            can_ask(&elicit, Some(&json!({"elicitation": {}}))),
            Ok(true)
        );
        assert_eq!(can_ask(&elicit, Some(&json!({}))), Err("elicitation"));
        assert_eq!(can_ask(&elicit, None), Err("elicitation"));
        let roots = json!({"jsonrpc":"2.0","id":4,"method":"roots/list"});
        assert_eq!(can_ask(&roots, Some(&json!({"roots": {}}))), Ok(false));
    }

    /// A call that never ends, as a parked call is until its retry.
    struct Waiting;

    impl ForwardedCall for Waiting {
        fn next(&mut self) -> mcp_bridge_upstream::BoxFuture<'_, mcp_bridge_upstream::Step> {
            Box::pin(std::future::pending())
        }
        fn cache_hint(&self) -> Option<mcp_bridge_upstream::CacheHint> {
            None
        }
        fn policy_generation(&self) -> Option<u64> {
            None
        }
        fn cache_outcome(&self) -> &'static str {
            "none"
        }
    }

    struct NoAnswer;

    impl AnswerSink for NoAnswer {
        fn send<'a>(
            &'a self,
            _answer: &'a Value,
        ) -> mcp_bridge_upstream::BoxFuture<'a, Result<(), mcp_bridge_upstream::CallError>>
        {
            Box::pin(async { Ok(()) })
        }
    }

    fn parked(owner: &str, binding: u8) -> Parked {
        Parked {
            call: Box::new(Waiting),
            answer: Arc::new(NoAnswer),
            request: json!({"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{}}),
            owner: Arc::from(owner),
            binding: [binding; 32],
            expires: Instant::now() + PARKED_CALL_TTL,
        }
    }

    #[test]
    fn a_state_is_single_use_and_bound_to_its_owner_and_request() {
        let rounds =
            InputRounds::new(prometheus::IntCounter::new("expired", "test").expect("a counter"));
        let state = rounds
            .park(parked("alice", 1))
            .map_err(|_| "parked")
            .unwrap();
        assert!(state.starts_with(STATE_PREFIX) && state.len() == STATE_PREFIX.len() + 32);
        assert!(rounds.take(&state, "bob", &[1; 32]).is_none());
        assert!(rounds.take(&state, "alice", &[2; 32]).is_none());
        assert!(
            rounds
                .take("mcp-bridge-input-0", "alice", &[1; 32])
                .is_none()
        );
        assert!(rounds.take(&state, "alice", &[1; 32]).is_some());
        assert!(rounds.take(&state, "alice", &[1; 32]).is_none());
    }

    #[test]
    fn one_principal_cannot_park_more_than_its_share() {
        let rounds =
            InputRounds::new(prometheus::IntCounter::new("expired", "test").expect("a counter"));
        for _ in 0..MAX_PARKED_PER_PRINCIPAL {
            assert!(rounds.park(parked("mallory", 1)).is_ok());
        }
        let refused = rounds
            .park(parked("mallory", 1))
            .err()
            .map(|refused| refused.0);
        assert_eq!(refused, Some(ParkRefusal::PrincipalFull));
        assert!(rounds.park(parked("alice", 1)).is_ok());
    }

    #[test]
    fn the_binding_names_endpoint_tool_and_arguments() {
        let call = |name: &str, x: i64| {
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
                "params":{"name":name,"arguments":{"x":x},"requestState":"s"}})
        };
        let first = binding_of("demo", "demo", &call("a", 1));
        assert_eq!(first, binding_of("demo", "demo", &call("a", 1)));
        assert_ne!(first, binding_of("demo", "demo", &call("a", 2)));
        assert_ne!(first, binding_of("demo", "demo", &call("b", 1)));
        assert_ne!(first, binding_of("other", "demo", &call("a", 1)));
        // On the aggregated endpoint the same stripped tool name on two servers differs.
        assert_ne!(
            binding_of("", "a", &call("x", 1)),
            binding_of("", "b", &call("x", 1))
        );
    }
}
