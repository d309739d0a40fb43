//! The `mcp-bridge` binary: `serve` runs the bridge, `check-config` validates a
//! configuration, `demo-server` runs the bundled stdio MCP server, `bench` runs the
//! policy lab. This file parses the command line, sets up logging and signals; the
//! application's wiring is [`app`].

mod app;
mod otel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mcp_bridge::config::{self, BridgeConfig, LogFormat};
use mcp_bridge::demo::{self, DemoOptions};
use mcp_bridge::front;
use mcp_bridge::lab::{self, BenchCommand};
use mcp_bridge::{policy, trace};

/// Pools stdio MCP servers behind one Streamable HTTP endpoint, with metrics and health.
#[derive(Parser)]
#[command(name = "mcp-bridge", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge: spawn and pool the configured servers and serve MCP over HTTP.
    ///
    /// Without --config it runs the embedded default: the bundled demo server on
    /// http://127.0.0.1:8080/mcp. Endpoints: POST /mcp (all servers, names namespaced
    /// `{server}__{name}`), POST /mcp/{server}, GET /metrics, /health, /healthz,
    /// /readyz, /admin/stats.
    Serve(ServeArgs),
    /// Validate a configuration file and print what `serve` would run (secrets redacted).
    ///
    /// Exits 0 when the configuration is valid, 2 otherwise, with an error naming the
    /// file, line and field. Nothing is spawned.
    CheckConfig(CheckConfigArgs),
    /// Run the bundled demo MCP server on stdin/stdout (the seed guide's task tools).
    ///
    /// Used by the default configuration, the tests and the benchmarks; it can add
    /// latency, fail or crash on demand.
    DemoServer(DemoOptions),
    /// The policy lab and load generator: replay traffic against policies side by side
    /// (`bench policies`), drive a running bridge (`bench load`), write a synthetic
    /// workload as a trace (`bench workload`), or explain what a chain decides for one
    /// call (`bench explain`).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file: mcp-bridge TOML or an `mcpServers` JSON file (Claude
    /// Desktop, .mcp.json, VS Code); the format is detected from the content.
    #[arg(long, short, env = "MCP_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding `http.listen` (use port 0 for any free port).
    #[arg(long, env = "MCP_BRIDGE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Log format, overriding `logging.format`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log filter (e.g. `info`, `debug`, `mcp_bridge=debug,backend=warn`), overriding
    /// `logging.level`. RUST_LOG is honoured when neither is given.
    #[arg(long)]
    log_level: Option<String>,
    /// Record every answered call to this trace file (JSON Lines) for `bench policies`.
    /// `POST /admin/record/stop` and `/start` pause and resume it.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Rotate the trace once it passes this size (e.g. 256MiB); FILE.1 ... keep the
    /// older parts.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "256MiB",
        requires = "record",
        value_parser = policy::parse_size
    )]
    record_max_bytes: usize,
    /// How many trace files to keep, the current one included.
    #[arg(long, value_name = "N", default_value_t = trace::DEFAULT_RECORD_FILES, requires = "record")]
    record_files: u32,
    /// Also record each call's canonical arguments, so the trace can drive `bench load`
    /// (off by default: arguments may hold data that should not be written to disk).
    #[arg(long, requires = "record")]
    record_arguments: bool,
    /// Start with recording paused; `POST /admin/record/start` begins it.
    #[arg(long, requires = "record")]
    record_paused: bool,
    /// Allow listening on a non-loopback address without `http.auth_token`. Only for a
    /// bridge behind something that authenticates every request: without a token anyone
    /// who reaches the port can run the configured servers (and, with no admin_token
    /// either, use /admin/*). The bridge logs a warning at start.
    #[arg(long, env = "MCP_BRIDGE_INSECURE_LISTEN")]
    insecure_listen: bool,
}

#[derive(clap::Args)]
struct CheckConfigArgs {
    /// The configuration file to check; without it, the embedded default is checked.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

fn main() -> ExitCode {
    // A backend's supervisor (`mcp-bridge __supervise COMMAND ...`, started by `serve`)
    // must run before anything else: it blocks signals and forks, which needs a process
    // with one thread, and its command line is not ours to parse.
    if let Some(code) = mcp_bridge::backend::run_supervisor_if_requested() {
        return code;
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args),
        Command::DemoServer(options) => demo_server(options),
        Command::Bench { command } => bench(command),
    }
}

// A config error is built once, at start-up, so its size does not matter.
#[allow(clippy::result_large_err)]
fn load(path: Option<&PathBuf>) -> Result<BridgeConfig, config::ConfigError> {
    match path {
        Some(path) => config::load_file(path),
        None => config::embedded_default(),
    }
}

fn check_config(args: CheckConfigArgs) -> ExitCode {
    match load(args.config.as_ref()) {
        Ok(config) => {
            println!("{}", config.describe());
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // Configuration errors stop the process before anything is spawned.
    let mut config = match load(args.config.as_ref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    let format = match args.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Human) => LogFormat::Human,
        None => config.logging.format,
    };
    // The runtime exists before tracing so the trace exporter can send on it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        let _entered = runtime.enter();
        otel::init_tracing(
            format,
            args.log_level.as_deref().unwrap_or(&config.logging.level),
            &config.telemetry,
        )
    };
    raise_fd_limit(config.http.max_client_connections);
    let record = match record_options(&args) {
        Ok(record) => record,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = front::check_exposure(&config.http, &config.auth, args.insecure_listen) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    // Every backend starts under a supervisor (this binary again) that ends the
    // backend's whole process tree with it; without our own path, the process-group
    // kill is the only line.
    match std::env::current_exe() {
        Ok(exe) => mcp_bridge::backend::supervise_with(exe),
        Err(error) => {
            tracing::warn!(%error, "cannot find the bridge's own executable; backends run without a supervisor, and descendants that leave their process group can outlive them")
        }
    }
    let watched = args.config.clone();
    let code = exit_code(runtime.block_on(app::serve(config, watched, record, shutdown_signal())));
    // The last spans leave while the runtime (which sends them) still runs.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    code
}

/// File descriptors the bridge needs besides client connections: refusals under way (64),
/// three pipes per backend process, the listener, log and trace files, plugin files.
const FD_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard limit and logs both, so that
/// `http.max_client_connections` (not a distribution's default soft limit, often 1024)
/// decides how many clients are served; warns when even the hard limit is too low for it.
#[cfg(unix)]
#[allow(unsafe_code)] // getrlimit and setrlimit have no safe wrapper in std.
fn raise_fd_limit(max_client_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot read the file descriptor limit (RLIMIT_NOFILE)");
        return;
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given; raising the soft limit up to the
        // hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, soft = soft_before, hard = limit.rlim_max, "cannot raise the soft file descriptor limit to the hard limit");
        }
    }
    tracing::info!(
        soft_before = soft_before,
        soft = limit.rlim_cur,
        hard = limit.rlim_max,
        "file descriptor limit (RLIMIT_NOFILE)"
    );
    let needed = (max_client_connections as u64).saturating_add(FD_RESERVE);
    if limit.rlim_cur < needed {
        tracing::warn!(
            soft = limit.rlim_cur,
            max_client_connections,
            needed,
            "the file descriptor limit is below what http.max_client_connections needs: accepts will fail with 'Too many open files' before the cap refuses connections; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower http.max_client_connections"
        );
    }
}

#[cfg(not(unix))]
fn raise_fd_limit(_max_client_connections: usize) {}

/// The `--record*` flags, checked.
fn record_options(args: &ServeArgs) -> Result<Option<trace::RecordOptions>, String> {
    let Some(path) = &args.record else {
        return Ok(None);
    };
    // A usize always fits in a u64 on the targets the bridge builds for.
    let max_bytes = args.record_max_bytes as u64;
    if args.record_files == 0 {
        return Err("--record-files must be at least 1".to_owned());
    }
    Ok(Some(trace::RecordOptions {
        path: path.clone(),
        max_bytes,
        max_files: args.record_files,
        arguments: args.record_arguments,
        paused: args.record_paused,
    }))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn bench(command: BenchCommand) -> ExitCode {
    match lab::run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn demo_server(options: DemoOptions) -> ExitCode {
    // The demo server's stdout is its protocol channel: logs go to stderr, quietly.
    let filter = tracing_subscriber::EnvFilter::try_from_env("DEMO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    block_on(tokio::runtime::Builder::new_current_thread(), async move {
        demo::run(options).await.map_err(anyhow::Error::from)
    })
}

/// Runs `future` on a runtime from `builder` and turns its outcome into an exit code.
fn block_on(
    mut builder: tokio::runtime::Builder,
    future: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    exit_code(runtime.block_on(future))
}

/// The exit code of a command's outcome, logging its error.
fn exit_code(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
