//! The project's one integration-test binary: the real `mcp-bridge` binary, real
//! server processes (the demo server and the npm reference servers) and real clients
//! written by others (the Python `mcp` SDK, `rmcp`).

// The tests signal and limit processes they started (kill, prlimit by pid), which std does
// not wrap; those libc calls are the only unsafe code here.
#![allow(unsafe_code)]

mod support;

mod auth;
mod auth_attacks;
mod auth_clients;
mod auth_principals;
mod cache;
mod cache_header;
mod cache_live;
mod clients;
mod concurrency;
mod config_errors;
mod conformance;
mod connections;
mod deployment;
mod disk_cache;
mod explain;
mod faults;
mod frozen;
mod hostile_clients;
mod http_input;
mod infra;
mod input_rounds;
mod isolation;
mod isolation_caps;
mod lab;
mod lab_fidelity;
mod lab_load;
mod lab_report;
mod lifecycle;
mod observability;
mod observe;
mod orphans;
mod plugin_bindings;
mod plugin_contract;
mod plugin_logs;
mod plugin_quarantine;
mod plugin_reload;
mod plugin_smoke;
mod plugin_tutorial;
mod plugins;
mod process_memory;
mod protocol_strictness;
mod reference_servers;
mod replicas;
mod session_abandonment;
mod session_tokens;
mod shadow;
mod smoke;
mod status_page;
mod tracing;
