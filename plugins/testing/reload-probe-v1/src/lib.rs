//! Test-only: build 1 of the reload probe (see `reload-probe`).

mcp_bridge_plugin_sdk::export!(reload_probe::ReloadProbe<1>);
