//! The smoke calls that prove a binding before it serves, over the servers' real tool
//! catalogues, and the late smoke of tools the host learns while a binding serves.
//!
//! Why the catalogues: a plugin whose `decide` panics only for `get_tasks` answers a
//! question about a dummy tool, so a smoke call about one proves nothing about the tools
//! it will be asked about. The wiring tells the host each server's tool list (names and
//! annotations) whenever a backend's handshake or `list_changed` reads one; a binding
//! that starts (load, reload, reconfigure) is asked about every known tool of every
//! server it covers, and a fault rejects the version. A tool list learned after a binding
//! serves (a backend that handshakes after the plugins load, which is the common case at
//! startup, or a tool `list_changed` added) is smoke-called on the serving bindings off
//! the request path, and a fault there quarantines that (binding, server, tool) at once.
//!
//! Every smoke is bounded: at most [`MAX_SMOKE_TOOLS_PER_SERVER`] tools of a server, at
//! most [`MAX_SMOKE_TOOLS_PER_BINDING`] tools for one binding, and at most
//! [`SMOKE_TIME_BUDGET`] of calls; what a bound skips is logged, and live traffic asks
//! the plugin about it first (under the run-time quarantine).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::bindings;
use super::error::PluginError;
use super::health::Quarantine;
use super::version::WarmInstance;
use super::wasm_policy::{self, FAULT_LOG_TARGET, SMOKE_SERVER, WasmPolicy};
use mcp_bridge_policy::{Annotations, Call, CallKind, Outcome, ServerHints, Status};

/// The tools of one server the host keeps (in the server's order) and smoke-calls; the
/// rest are counted as skipped. A server lists what it likes, so its list is capped.
pub const MAX_SMOKE_TOOLS_PER_SERVER: usize = 256;
/// The catalogue tools one binding is smoke-called about when it starts (over every
/// server it covers); the rest are skipped.
pub const MAX_SMOKE_TOOLS_PER_BINDING: usize = 1024;
/// The wall-clock time one binding's start smoke, or one late smoke of a new catalogue
/// (every serving binding together), may take; past it the remaining tools are skipped.
/// A plugin answers a question in microseconds; a slow one must not hold a reload (or a
/// backend's first handshake) for `tools × decision_timeout`.
pub const SMOKE_TIME_BUDGET: Duration = Duration::from_secs(2);

/// The dummy tool of the smoke call every binding answers, whatever catalogues are known.
const SMOKE_TOOL: &str = "smoke";

/// One tool of a server's catalogue, as a smoke call asks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueTool {
    pub name: String,
    pub annotations: Annotations,
}

/// One server's tools as the host keeps them.
#[derive(Debug, Default)]
struct ServerCatalogue {
    /// At most [`MAX_SMOKE_TOOLS_PER_SERVER`], in the server's order.
    tools: Vec<CatalogueTool>,
    /// The tools the server listed past the cap.
    beyond_cap: usize,
}

/// The tool catalogues of the servers the host has heard of, by server name.
#[derive(Debug, Default, Clone)]
pub struct Catalogues {
    servers: BTreeMap<String, Arc<ServerCatalogue>>,
}

impl Catalogues {
    /// Keeps `server`'s catalogue (its first [`MAX_SMOKE_TOOLS_PER_SERVER`] tools) in
    /// place of the last one, and returns the kept tools that are new or whose
    /// annotations changed: what the serving bindings have not been smoke-called about.
    pub fn learn(&mut self, server: &str, mut tools: Vec<CatalogueTool>) -> Vec<CatalogueTool> {
        let beyond_cap = tools.len().saturating_sub(MAX_SMOKE_TOOLS_PER_SERVER);
        tools.truncate(MAX_SMOKE_TOOLS_PER_SERVER);
        let previous = self.servers.get(server);
        let fresh: Vec<CatalogueTool> = tools
            .iter()
            .filter(|tool| previous.is_none_or(|known| !known.tools.contains(tool)))
            .cloned()
            .collect();
        if beyond_cap > 0 {
            tracing::warn!(
                target: FAULT_LOG_TARGET,
                server,
                kept = MAX_SMOKE_TOOLS_PER_SERVER,
                skipped = beyond_cap,
                "the server lists more tools than plugins are smoke-called about; live calls ask about the rest first"
            );
        }
        self.servers.insert(
            server.to_owned(),
            Arc::new(ServerCatalogue { tools, beyond_cap }),
        );
        fresh
    }

    /// Each known server with the names of the tools it lists (within the cap).
    pub(crate) fn listed(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> {
        self.servers.iter().map(|(server, catalogue)| {
            (
                server.as_str(),
                catalogue.tools.iter().map(|tool| tool.name.as_str()),
            )
        })
    }

    /// The admin view: each known server's tool count, and the tools past the cap.
    pub fn view(&self) -> Value {
        self.servers
            .iter()
            .map(|(server, catalogue)| {
                (
                    server.clone(),
                    json!({ "tools": catalogue.tools.len(), "beyond_cap": catalogue.beyond_cap }),
                )
            })
            .collect::<serde_json::Map<String, Value>>()
            .into()
    }
}

/// The catalogue tools a binding starting now is smoke-called about, and how many the
/// bounds skip.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    pub calls: Vec<(&'a str, &'a CatalogueTool)>,
    pub skipped: usize,
}

/// The tools of every known catalogue of each server `servers` names (every server when
/// empty), each server's in its order, servers by name, at most
/// [`MAX_SMOKE_TOOLS_PER_BINDING`] in all.
pub(crate) fn plan<'a>(catalogues: &'a Catalogues, servers: &[String]) -> Plan<'a> {
    let mut plan = Plan::default();
    for (server, catalogue) in &catalogues.servers {
        if !servers.is_empty() && !servers.iter().any(|name| name == server) {
            continue;
        }
        plan.skipped += catalogue.beyond_cap;
        for tool in &catalogue.tools {
            if plan.calls.len() < MAX_SMOKE_TOOLS_PER_BINDING {
                plan.calls.push((server, tool));
            } else {
                plan.skipped += 1;
            }
        }
    }
    plan
}

/// Which question of a smoke call failed, and how.
pub(crate) struct Failed {
    /// `decide`, `ttl` or `invalidations`, as fault records name questions.
    pub question: &'static str,
    pub error: wasmtime::Error,
}

/// Asks `instance` every question it implements about `tool` on `server`, each under a
/// fresh deadline: `decide` with `{}` arguments and the tool's annotations, `ttl`, and
/// `invalidations` for a successful outcome.
pub(crate) fn ask(
    instance: &mut WarmInstance,
    deadline_ticks: u64,
    server: &str,
    tool: &str,
    annotations: Annotations,
) -> Result<(), Failed> {
    let call = Call {
        server,
        method: "tools/call",
        kind: CallKind::Tool,
        name: tool,
        canonical_arguments: "{}",
        annotations,
        hints: ServerHints::default(),
        principal: None,
    };
    let wit_call = bindings::call(&call);
    if let Some(guest) = instance.cache_policy.clone() {
        instance.store.set_epoch_deadline(deadline_ticks);
        guest
            .call_decide(&mut instance.store, &wit_call)
            .map_err(|error| Failed {
                question: "decide",
                error,
            })?;
        instance.store.data_mut().release_panic();
    }
    if let Some(guest) = instance.ttl_table.clone() {
        instance.store.set_epoch_deadline(deadline_ticks);
        guest
            .call_ttl(&mut instance.store, server, tool)
            .map_err(|error| Failed {
                question: "ttl",
                error,
            })?;
        instance.store.data_mut().release_panic();
    }
    if let Some(guest) = instance.invalidation_rules.clone() {
        instance.store.set_epoch_deadline(deadline_ticks);
        let outcome = bindings::outcome(&Outcome::of(Status::Success));
        guest
            .call_invalidations(&mut instance.store, &wit_call, outcome)
            .map_err(|error| Failed {
                question: "invalidations",
                error,
            })?;
        instance.store.data_mut().release_panic();
    }
    Ok(())
}

/// What a starting binding's smoke call covers: the tool catalogues the host knows, and the
/// quarantines it takes over instead of asking again (see [`crate::BindingHealth::carry`]).
#[derive(Clone, Copy)]
pub struct KnownTools<'a> {
    pub catalogues: &'a Catalogues,
    pub carried: &'a [Quarantine],
}

/// The smoke of a binding that starts: the dummy call (every interface must answer),
/// then every planned catalogue tool. The first fault rejects the binding (and so the
/// version) with an error naming the server, the tool and the guest's panic.
pub(crate) fn at_start(
    instance: &mut WarmInstance,
    policy: &WasmPolicy,
    known: &KnownTools<'_>,
) -> Result<(), PluginError> {
    let KnownTools {
        catalogues,
        carried,
    } = *known;
    let version = policy.version();
    let deadline = version.deadline_ticks();
    let dummy = Annotations {
        read_only: Some(true),
        ..Annotations::default()
    };
    let fail = |instance: &mut WarmInstance, server: &str, tool: &str, failed: Failed| {
        let fault = wasm_policy::fault_of(instance, &failed.error);
        wasm_policy::log_backtrace(policy.binding_name(), &version.file, server, tool, &fault);
        let stage = if server == SMOKE_SERVER {
            format!("the smoke {} call", failed.question)
        } else {
            format!(
                "the smoke {} call for {server}/{tool} (a tool of the server's catalogue, arguments {{}})",
                failed.question
            )
        };
        PluginError::Smoke {
            binding: policy.binding_name().to_string(),
            file: version.file.clone(),
            stage,
            fault: Box::new(fault),
        }
    };
    ask(instance, deadline, SMOKE_SERVER, SMOKE_TOOL, dummy)
        .map_err(|failed| fail(instance, SMOKE_SERVER, SMOKE_TOOL, failed))?;
    let plan = plan(catalogues, policy.servers());
    let started = Instant::now();
    let mut asked = 0;
    for (server, tool) in &plan.calls {
        if started.elapsed() > SMOKE_TIME_BUDGET {
            break;
        }
        // A tool the binding's predecessor was quarantined for by the late smoke is not
        // asked again: the quarantine is carried over instead.
        if carried
            .iter()
            .any(|q| q.server == **server && q.tool == tool.name)
        {
            continue;
        }
        ask(instance, deadline, server, &tool.name, tool.annotations)
            .map_err(|failed| fail(instance, server, &tool.name, failed))?;
        asked += 1;
    }
    let skipped = plan.skipped + (plan.calls.len() - asked);
    if asked > 0 || skipped > 0 {
        tracing::info!(
            target: FAULT_LOG_TARGET,
            binding = policy.binding_name().as_ref(),
            file = %version.file,
            tools = asked,
            skipped,
            "plugin binding passed the smoke call over the servers' tool catalogues{}",
            if skipped > 0 { SKIPPED_NOTE } else { "" }
        );
    }
    Ok(())
}

/// Why tools were skipped, as the log says it.
const SKIPPED_NOTE: &str = " (the skipped tools are past a bound: 256 a server, 1024 a binding, 2 s of calls; live calls ask about them first)";

/// What one late smoke did on one binding.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LateSmoke {
    /// The tools asked about without a fault.
    pub passed: usize,
    /// The tools the smoke quarantined.
    pub quarantined: Vec<String>,
    /// The tools not asked: past the time budget, already quarantined, or after the
    /// binding was.
    pub skipped: usize,
}

/// Smoke-calls `policy` about `tools` of `server` (tools the serving binding has not been
/// asked about) on a fresh instance of its own, until `deadline`. A fault quarantines
/// that (binding, server, tool) at once and the smoke goes on with the next tool on a
/// new instance.
pub(crate) fn late(
    policy: &WasmPolicy,
    server: &str,
    tools: &[CatalogueTool],
    deadline: Instant,
) -> LateSmoke {
    let mut report = LateSmoke::default();
    if !policy.applies_to(server) {
        return report;
    }
    let version = policy.version();
    let mut instance = None;
    for tool in tools {
        let health = policy.health();
        if Instant::now() > deadline
            || health.binding_quarantined()
            || health.is_quarantined(server, &tool.name)
        {
            report.skipped += 1;
            continue;
        }
        let mut current = match instance.take() {
            Some(current) => current,
            None => match version.instantiate(policy.binding_name(), policy.config_json()) {
                Ok(fresh) => fresh,
                Err(error) => {
                    // Not a tool's fault: live calls meet it and the run-time
                    // quarantine judges it.
                    tracing::warn!(target: FAULT_LOG_TARGET, binding = policy.binding_name().as_ref(), file = %version.file, server, error = ?error, "the smoke call on a new catalogue could not make an instance; live calls are asked as usual");
                    report.skipped = tools.len() - report.passed - report.quarantined.len();
                    return report;
                }
            },
        };
        match ask(
            &mut current,
            version.deadline_ticks(),
            server,
            &tool.name,
            tool.annotations,
        ) {
            Ok(()) => {
                report.passed += 1;
                instance = Some(current);
            }
            Err(failed) => {
                // The instance is dropped: a fault may have left its state corrupt.
                let fault = wasm_policy::fault_of(&mut current, &failed.error);
                policy.smoke_fault(failed.question, server, &tool.name, fault);
                report.quarantined.push(tool.name.clone());
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(count: usize) -> Vec<CatalogueTool> {
        (0..count)
            .map(|index| CatalogueTool {
                name: format!("tool_{index}"),
                annotations: Annotations::default(),
            })
            .collect()
    }

    #[test]
    fn a_server_keeps_at_most_its_cap_and_counts_the_rest() {
        let mut catalogues = Catalogues::default();
        let fresh = catalogues.learn("big", tools(MAX_SMOKE_TOOLS_PER_SERVER + 10));
        assert_eq!(fresh.len(), MAX_SMOKE_TOOLS_PER_SERVER);
        assert_eq!(
            catalogues.view()["big"],
            json!({"tools": MAX_SMOKE_TOOLS_PER_SERVER, "beyond_cap": 10})
        );
        let plan = plan(&catalogues, &[]);
        assert_eq!(plan.calls.len(), MAX_SMOKE_TOOLS_PER_SERVER);
        assert_eq!(plan.skipped, 10);
    }

    #[test]
    fn a_binding_is_smoked_about_at_most_its_cap_over_every_server() {
        let mut catalogues = Catalogues::default();
        for server in 0..6 {
            catalogues.learn(&format!("s{server}"), tools(MAX_SMOKE_TOOLS_PER_SERVER));
        }
        let plan_all = plan(&catalogues, &[]);
        assert_eq!(plan_all.calls.len(), MAX_SMOKE_TOOLS_PER_BINDING);
        assert_eq!(
            plan_all.skipped,
            6 * MAX_SMOKE_TOOLS_PER_SERVER - MAX_SMOKE_TOOLS_PER_BINDING
        );
        // Servers in name order, each server's tools in its order.
        assert_eq!(plan_all.calls[0].0, "s0");
        assert_eq!(plan_all.calls[0].1.name, "tool_0");

        // A bound binding is asked only about its servers' tools.
        let bound = plan(&catalogues, &["s5".to_owned(), "unknown".to_owned()]);
        assert_eq!(bound.calls.len(), MAX_SMOKE_TOOLS_PER_SERVER);
        assert!(bound.calls.iter().all(|(server, _)| *server == "s5"));
        assert_eq!(bound.skipped, 0);
    }

    #[test]
    fn a_catalogue_learned_again_yields_only_new_or_changed_tools() {
        let mut catalogues = Catalogues::default();
        assert_eq!(catalogues.learn("demo", tools(3)).len(), 3);
        assert!(catalogues.learn("demo", tools(3)).is_empty());
        let mut changed = tools(4);
        changed[1].annotations.read_only = Some(true);
        let fresh = catalogues.learn("demo", changed);
        let names: Vec<&str> = fresh.iter().map(|tool| tool.name.as_str()).collect();
        assert_eq!(names, ["tool_1", "tool_3"]);
        // Another server's list is its own.
        assert_eq!(catalogues.learn("other", tools(2)).len(), 2);
    }
}
