//! The identity benchmark: cached `tools/call` throughput with bearer-JWT authentication on,
//! as a ratio to the same bridge with authentication off, measured in one run on real
//! processes, two bridges taking turns round by round.
//!
//! The JWT bridge checks every request's token: the first time against the JWKS (an
//! Ed25519 key made for the run, read from a `jwks_file`), then from its token cache by
//! digest. The target is a ratio of at least 0.9: authentication must stay off the hot path.
//!
//! Run it with `cargo bench --bench auth`; without `--bench` (as under `cargo test
//! --benches`) it runs a short smoke that checks the harness end to end but not the target.
//! It prints a table and writes `target/bench-results/auth.json`.

#[path = "auth/issuer.rs"]
mod issuer;
#[allow(dead_code)]
#[path = "bridge/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "bridge/stats.rs"]
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Parser as _;
use serde_json::json;

use mcp_bridge_test_support::bench::{self, BenchMode};
use mcp_bridge_test_support::repo::toml_command;
use mcp_bridge_test_support::{Bridge, metric};

use self::issuer::{AUDIENCE, ISSUER, Issuer};
use self::load::{Contender, TurnsPlan};
use self::stats::round2;

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");
const ENDPOINT: &str = "/mcp/demo";
/// The least JWT-on throughput, as a share of auth-off, a full run accepts.
const MIN_RATIO: f64 = 0.9;

#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench auth --")]
struct Args {
    #[command(flatten)]
    mode: BenchMode,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode.list {
        return ExitCode::SUCCESS;
    }
    bench::run_on_one_thread(run(&TurnsPlan::new(&args.mode)))
}

async fn start_bridge(auth: &str) -> Result<Bridge> {
    let command = toml_command(BRIDGE_EXE);
    let config = format!(
        "[servers.demo]\ncommand = {command}\nargs = [\"demo-server\"]\nmin_connections = 2\nmax_connections = 2\n\n[cache]\nenabled = true\ndefault_ttl = \"10m\"\n{auth}"
    );
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), &config, &[])?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

async fn run(plan: &TurnsPlan) -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mode = if plan.smoke { "smoke" } else { "full" };
    eprintln!("bench: auth ({mode} run, {profile} build)");
    let issuer = Issuer::new()?;
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&issuer.jwks)?)?;
    let jwt_config = format!(
        "\n[auth.jwt]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = {}\nrequired_scopes = [\"mcp\"]\n",
        serde_json::to_string(&jwks.display().to_string())?
    );
    let off = start_bridge("").await?;
    let jwt = start_bridge(&jwt_config).await?;

    let mut contenders = Vec::new();
    // Three contenders: auth off; auth off with the same bearer headers sent (a control:
    // what the bigger requests alone cost the client and the HTTP layer, on one machine);
    // and the JWT bridge.
    for (bridge, with_token) in [(&off, false), (&off, true), (&jwt, true)] {
        let mut targets = Vec::new();
        for index in 0..plan.connections {
            let mut target = bridge.target(ENDPOINT);
            // One principal per connection, as many callers would be: each token is
            // verified once and then found in the token cache.
            if with_token {
                target.token = Some(issuer.token(&format!("user-{index}"))?);
            }
            targets.push(Arc::new(target));
        }
        contenders.push(Contender::cached(bridge.pid(), targets).await?);
    }
    let reports =
        load::taking_turns(contenders, plan.rounds, plan.warmup, plan.round_window).await?;
    // The cache counters come from /metrics, which needs no credential (the admin routes of
    // the JWT bridge would want an admin one).
    for (name, bridge) in [("auth-off", &off), ("jwt", &jwt)] {
        load::ensure_cached(bridge, name).await?;
    }
    // Every request of the JWT bridge was authenticated, almost all from the token cache.
    let verified = metric(
        &jwt,
        "mcp_bridge_auth_requests_total",
        &["credential=\"jwt\"", "result=\"ok\""],
    )
    .await?;
    let cache_hits = metric(
        &jwt,
        "mcp_bridge_auth_token_cache_total",
        &["result=\"hit\""],
    )
    .await?;
    ensure!(
        verified >= reports[2].ok as f64,
        "the JWT bridge authenticated {verified} requests for {} calls",
        reports[2].ok
    );
    ensure!(cache_hits > 0.0, "no token was found in the token cache");
    let off_rate = reports[0].calls_per_second();
    let headers_rate = reports[1].calls_per_second();
    let jwt_rate = reports[2].calls_per_second();
    let auth_work_ratio = jwt_rate / headers_rate.max(1.0);
    let ratio = jwt_rate / off_rate.max(1.0);
    let _ = (
        off.stop(Duration::from_secs(20)).await,
        jwt.stop(Duration::from_secs(20)).await,
    );
    println!(
        "mcp-bridge auth bench ({mode} run, {profile} build)\n\ncached tools/call at {} connections: auth off {off_rate:.0} calls/s, bearer JWT {jwt_rate:.0} calls/s: ratio {ratio:.2} (target at least {MIN_RATIO})\ncontrol: auth off with the same Authorization headers sent {headers_rate:.0} calls/s; JWT to that: {auth_work_ratio:.2} (the checking alone)\ntokens verified or found: {verified:.0}, token-cache hits: {cache_hits:.0}\n",
        plan.connections
    );
    let document = json!({
        "mode": mode,
        "profile": profile,
        "connections": plan.connections,
        "auth_off": reports[0].comparison_json(),
        "auth_off_same_headers": reports[1].comparison_json(),
        "jwt": reports[2].comparison_json(),
        "ratio_to_same_headers": round2(auth_work_ratio),
        "ratio": round2(ratio),
        "min_ratio": MIN_RATIO,
        "token_cache_hits": cache_hits,
    });
    let path = bench::results_path(Path::new(BRIDGE_EXE), "auth.json");
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());
    // A smoke run is too short and too small to judge a ratio on a shared machine.
    if !plan.smoke {
        ensure!(
            ratio >= MIN_RATIO,
            "cached throughput with JWT auth is {ratio:.2}x auth off, below the {MIN_RATIO} target"
        );
    }
    Ok(())
}
