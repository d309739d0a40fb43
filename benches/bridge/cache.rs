//! The two cache settings the bench runs the bridge with, and the check that the cached bridge
//! really answered from its cache.
//!
//! The bridge's cache is on by default, so the bridge measured "uncached" has to turn it off
//! explicitly; the cached bridge keeps its defaults except for a TTL long enough that no entry
//! expires during a run.

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

/// How long the cached bridge keeps a result: far longer than a run, so every call after the
/// first is a hit.
pub(crate) const CACHED_TTL: &str = "10m";

/// The smallest share of the cached bridge's calls that must be hits; below it the bench fails,
/// since its "cached" numbers would then mix in backend calls.
pub(crate) const MIN_HIT_RATE: f64 = 0.99;

/// Which cache setting a bridge runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheMode {
    /// `[cache] enabled = false`: every call reaches a backend process.
    Off,
    /// The cache on, with [`CACHED_TTL`] as the TTL of the read-only tool the bench calls.
    On,
}

impl CacheMode {
    /// The `[cache]` table of the bridge's config.
    pub(crate) fn toml(self) -> String {
        match self {
            CacheMode::Off => "[cache]\nenabled = false\n".to_owned(),
            CacheMode::On => format!("[cache]\nenabled = true\ndefault_ttl = \"{CACHED_TTL}\"\n"),
        }
    }

    /// The same setting for the JSON report.
    pub(crate) fn to_json(self) -> Value {
        match self {
            CacheMode::Off => json!({ "enabled": false }),
            CacheMode::On => json!({ "enabled": true, "default_ttl": CACHED_TTL }),
        }
    }
}

/// The cached bridge's counters after the run, held against the calls the bench sent it.
#[derive(Clone, Debug)]
pub(crate) struct CacheCheck {
    /// `tools/call` requests the bench sent to the cached bridge, warm-ups included.
    pub calls: u64,
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub stale: u64,
    pub bypass: u64,
    pub entries: u64,
    /// The whole `/admin/cache/stats` body, for the JSON report.
    pub stats: Value,
}

impl CacheCheck {
    /// Reads the counters out of a `/admin/cache/stats` body.
    pub(crate) fn new(calls: u64, stats: Value) -> Result<Self> {
        let counter = |name: &str| -> Result<u64> {
            stats
                .get(name)
                .and_then(Value::as_u64)
                .with_context(|| format!("/admin/cache/stats has no counter {name:?}: {stats}"))
        };
        Ok(Self {
            calls,
            hits: counter("hits")?,
            misses: counter("misses")?,
            coalesced: counter("coalesced")?,
            stale: counter("stale_served")?,
            bypass: counter("bypass")?,
            entries: counter("entries")?,
            stats,
        })
    }

    /// Hits over the calls the bench sent, not over the lookups the bridge counted: a call that
    /// skipped the cache altogether (a bypass, or a bug) must lower the rate too.
    pub(crate) fn hit_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.hits as f64 / self.calls as f64
        }
    }

    /// Fails unless at least [`MIN_HIT_RATE`] of the calls were hits.
    pub(crate) fn ensure_hits(&self) -> Result<()> {
        if self.hit_rate() < MIN_HIT_RATE {
            bail!(
                "the cached bridge answered only {} of {} calls from its cache ({:.2}%, at least \
                 {:.0}% required), so its numbers do not measure cache hits; its stats: {}",
                self.hits,
                self.calls,
                self.hit_rate() * 100.0,
                MIN_HIT_RATE * 100.0,
                self.stats
            );
        }
        Ok(())
    }

    /// One line for the table.
    pub(crate) fn summary(&self) -> String {
        format!(
            "hits {}, misses {}, coalesced {}, stale {}, bypassed {}, entries {}; {} tools/call \
             sent: hit rate {:.2}% (at least {:.0}% required)",
            self.hits,
            self.misses,
            self.coalesced,
            self.stale,
            self.bypass,
            self.entries,
            self.calls,
            self.hit_rate() * 100.0,
            MIN_HIT_RATE * 100.0
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "calls_sent": self.calls,
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "stale_served": self.stale,
            "bypass": self.bypass,
            "entries": self.entries,
            "hit_rate": round4(self.hit_rate()),
            "min_hit_rate": MIN_HIT_RATE,
            "stats": self.stats,
        })
    }
}

/// Rounds to 0.0001, so a rate like 0.99997 does not print as 1.
fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}
