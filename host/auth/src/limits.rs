//! Per-principal token buckets and in-flight caps.
//!
//! OWNED BY THE ACCESS/LIMITS HELPER: a stub with the API the front codes against.

use std::sync::Arc;
use std::time::Duration;

use mcp_bridge_config::LimitsConfig;

use crate::Principal;

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// A token bucket was empty.
    Rate,
    /// The principal already had its most calls in flight.
    InFlight,
}

impl LimitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::InFlight => "in_flight",
        }
    }
}

/// A refused call: which limit, which rule, and when to try again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Limited {
    pub reason: LimitReason,
    /// The `[[limits.rules]]` entry, or `None` for the per-principal `[limits]`.
    pub rule: Option<String>,
    pub retry_after: Duration,
    pub message: String,
}

/// Held while a call is in flight at a backend; dropping it frees the principal's slot.
pub struct InFlightPermit {
    _slots: Vec<Arc<()>>,
}

/// Every principal's buckets and in-flight counts, for one `[limits]` config.
pub struct Limiter {
    config: LimitsConfig,
}

impl Limiter {
    pub fn new(config: &LimitsConfig) -> Limiter {
        Limiter {
            config: config.clone(),
        }
    }

    /// Whether cache hits take a token (`count_cache_hits`).
    pub fn counts_cache_hits(&self) -> bool {
        self.config.count_cache_hits
    }

    /// Takes one token from every bucket that applies to this call, or none if any is empty.
    pub fn take_token(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
    ) -> Result<(), Limited> {
        let _ = (principal, server, tool);
        Ok(())
    }

    /// Takes an in-flight slot from every cap that applies, or none if any is full.
    pub fn enter(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
    ) -> Result<InFlightPermit, Limited> {
        let _ = (principal, server, tool);
        Ok(InFlightPermit { _slots: Vec::new() })
    }

    /// Calls in flight per principal, for `/admin/stats`.
    pub fn in_flight(&self) -> Vec<(Arc<str>, usize)> {
        Vec::new()
    }
}
