//! The log lines that say when a table replaces a TTL a plugin chose (a `[cache.ttl]` row,
//! or another plugin's TTL table): one INFO line per override each time a chain is
//! published, under the `mcp_bridge::plugin` target, so a plugin author whose 5 minutes
//! became 7 reads why at load, not per call. [`PolicyChain::ttl_overrides`] finds them.

use mcp_bridge_policy::PolicyChain;

/// At most this many override lines per published chain; the rest are counted in one
/// more line, so a config with many rows cannot flood the log at each swap.
pub(crate) const MAX_OVERRIDE_LINES: usize = 16;

/// Logs the TTL overrides of `chain`, published as `generation`. `servers` are the servers
/// the bindings name, over which a `[cache.ttl."*"]` row is spread. Returns how many
/// overrides there were.
pub(crate) fn log_ttl_overrides(chain: &PolicyChain, servers: &[&str], generation: u64) -> usize {
    let overrides = chain.ttl_overrides(servers);
    for over in overrides.iter().take(MAX_OVERRIDE_LINES) {
        tracing::info!(
            target: "mcp_bridge::plugin",
            binding = %over.binding,
            server = %over.server,
            tool = %over.tool,
            ttl_source = %over.source,
            generation,
            "{over}"
        );
    }
    if let Some(more) = overrides
        .len()
        .checked_sub(MAX_OVERRIDE_LINES)
        .filter(|more| *more > 0)
    {
        tracing::info!(
            target: "mcp_bridge::plugin",
            generation,
            more,
            "and {more} more TTL overrides of plugin directives (see the SDK README's \"Where a TTL comes from\")"
        );
    }
    overrides.len()
}
