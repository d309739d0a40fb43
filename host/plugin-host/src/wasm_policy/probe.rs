//! A binding asked one question on its own, for an explanation (`POST /admin/explain`,
//! `bench explain`): the same warm instances and CPU deadline as a live call, but what
//! it finds is only reported. An explanation must never quarantine a binding that
//! serves production, so a fault here is not recorded in the binding's health, not
//! counted in its metrics and not logged as a live fault (one debug line says what
//! happened); a quarantined tool is reported as such and not asked, as a live call
//! would not ask it.

use super::{Interface, WasmPolicy, bindings, fault_of, log_backtrace};
use crate::error::{Fault, FaultKind};
use crate::version::{InstantiateError, WarmInstance};
use mcp_bridge_policy::{
    Answer, Decision, Invalidation, InvalidationAnswer, Probed, Question, TtlAnswer,
};
use std::time::Duration;

impl WasmPolicy {
    /// [`mcp_bridge_policy::Policy::probe`] for a plugin binding: whether it applies to
    /// the question's server, whether the tool (or the binding) is quarantined, and else
    /// the plugin's answer, or the safe default a live call would use and the fault,
    /// the guest's panic message first.
    pub(super) fn probe_question(&self, question: Question<'_>) -> Probed {
        let (interface, server, tool, implemented) = match question {
            Question::Decide(call) => (
                Interface::CachePolicy,
                call.server,
                call.name,
                self.exports.cache_policy,
            ),
            Question::Ttl { server, tool } => {
                (Interface::TtlTable, server, tool, self.exports.ttl_table)
            }
            Question::Invalidations(call, _) => (
                Interface::InvalidationRules,
                call.server,
                call.name,
                self.exports.invalidation_rules,
            ),
        };
        if !self.applies_to(server) {
            return Probed {
                applies: false,
                ..Probed::answered(abstain(question))
            };
        }
        if !implemented {
            return Probed::answered(abstain(question));
        }
        if self.is_quarantined(server, tool) {
            return Probed {
                quarantined: true,
                ..Probed::answered(safe_default(question))
            };
        }
        match self.ask(question) {
            Ok(answer) => Probed::answered(answer),
            Err(fault) => {
                tracing::debug!(target: super::FAULT_LOG_TARGET, binding = %self.name, file = %self.version.file, interface = interface.question(), server, tool, kind = fault.kind.as_str(), "plugin fault while explaining a call (not counted against the binding): {}", fault.headline());
                log_backtrace(&self.name, &self.version.file, server, tool, &fault);
                Probed {
                    fault: Some(format!("{} ({})", fault.headline(), fault.kind.as_str())),
                    ..Probed::answered(safe_default(question))
                }
            }
        }
    }

    /// Asks the plugin on a warm instance under a fresh deadline. An instance that
    /// faults is dropped, as after a live call; a healthy one goes back to the pool.
    fn ask(&self, question: Question<'_>) -> Result<Answer, Fault> {
        let pooled = self.idle.lock().pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self
                .version
                .instantiate(&self.name, &self.config_json)
                .map_err(instantiate_fault)?,
        };
        instance
            .store
            .set_epoch_deadline(self.version.deadline_ticks());
        match call_guest(&mut instance, question) {
            Ok(answer) => {
                instance.store.data_mut().release_panic();
                let mut idle = self.idle.lock();
                if idle.len() < self.max_idle {
                    idle.push(instance);
                }
                Ok(answer)
            }
            Err(error) => Err(fault_of(&mut instance, &error)),
        }
    }
}

/// The one WASM call a question makes.
fn call_guest(instance: &mut WarmInstance, question: Question<'_>) -> wasmtime::Result<Answer> {
    match question {
        Question::Decide(call) => {
            let Some(guest) = instance.cache_policy.clone() else {
                return Ok(abstain(question));
            };
            guest
                .call_decide(&mut instance.store, &bindings::call(call))
                .map(|decision| Answer::Decision(bindings::decision(decision)))
        }
        Question::Ttl { server, tool } => {
            let Some(guest) = instance.ttl_table.clone() else {
                return Ok(abstain(question));
            };
            guest
                .call_ttl(&mut instance.store, server, tool)
                .map(|answer| Answer::Ttl(bindings::ttl_answer(answer)))
        }
        Question::Invalidations(call, outcome) => {
            let Some(guest) = instance.invalidation_rules.clone() else {
                return Ok(abstain(question));
            };
            guest
                .call_invalidations(
                    &mut instance.store,
                    &bindings::call(call),
                    bindings::outcome(outcome),
                )
                .map(|answer| Answer::Invalidations(bindings::invalidation_answer(answer)))
        }
    }
}

/// Why no instance could be made, as the fault a live call would report.
fn instantiate_fault(error: InstantiateError) -> Fault {
    match error {
        InstantiateError::Fault(fault) => fault,
        InstantiateError::InitRejected(message) => Fault::new(
            FaultKind::Instantiate,
            format!("init rejected its config: {message}"),
        ),
        InstantiateError::Contract(error) => Fault::new(FaultKind::Instantiate, error.to_string()),
    }
}

/// A policy's answer when it has nothing to say.
fn abstain(question: Question<'_>) -> Answer {
    match question {
        Question::Decide(_) => Answer::Decision(Decision::Abstain),
        Question::Ttl { .. } => Answer::Ttl(TtlAnswer::Abstain),
        Question::Invalidations(..) => Answer::Invalidations(InvalidationAnswer::Abstain),
    }
}

/// What a live call answers when the plugin faults or is quarantined (the `Policy`
/// methods' defaults): bypass, a zero TTL, the whole server invalidated.
fn safe_default(question: Question<'_>) -> Answer {
    match question {
        Question::Decide(_) => Answer::Decision(Decision::Bypass),
        Question::Ttl { .. } => Answer::Ttl(TtlAnswer::Ttl(Duration::ZERO)),
        Question::Invalidations(call, _) => {
            Answer::Invalidations(InvalidationAnswer::Rules(vec![Invalidation::Server(
                call.server.to_owned(),
            )]))
        }
    }
}
