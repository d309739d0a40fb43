//! Builds every plugin crate of the workspace (a package under `plugins/` whose library
//! is a `cdylib`) for `wasm32-wasip2`, in one cargo invocation, and writes their paths as
//! constants (`$OUT_DIR/artifacts.rs`). Cargo reruns this when anything under `wit/` or
//! `plugins/` changes, so a test never runs against a stale plugin.
//!
//! The nested build uses its own target directory (`target/plugins`): the outer cargo
//! holds the lock on its own while build scripts run, and one shared directory lets
//! `cargo test`, `cargo bench`, clippy and `scripts/build-plugins.sh` reuse each other's
//! plugin builds.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

struct Plugin {
    package: String,
    test_only: bool,
}

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(3)
        .expect("the artifacts crate lives at plugins/testing/artifacts")
        .to_path_buf();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for watched in ["wit", "plugins", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let plugins = discover(&cargo, &root);
    ensure_target_installed();
    let target_dir = root.join("target/plugins");
    // The outer cargo holds its target directory's lock while this runs: building there
    // again would wait for ever.
    let outer = env::var_os("OUT_DIR").map(PathBuf::from);
    assert!(
        !outer.is_some_and(|out| out.starts_with(&target_dir)),
        "build the host with a target directory other than {} (the plugins' own)",
        target_dir.display()
    );
    build(&cargo, &root, &target_dir, &plugins);

    let release = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    let mut all =
        String::from("/// Every plugin, by package name.\npub const ALL: &[Artifact] = &[\n");
    for plugin in &plugins {
        let path = release.join(format!("{}.wasm", plugin.package.replace('-', "_")));
        assert!(path.is_file(), "cargo built no {}", path.display());
        let constant = plugin.package.replace('-', "_").to_uppercase();
        let kind = if plugin.test_only {
            "test-only"
        } else {
            "example"
        };
        writeln!(
            code,
            "/// The `{}` plugin ({kind}, `plugins/{}{}`).\npub const {constant}: &str = {:?};",
            plugin.package,
            if plugin.test_only { "testing/" } else { "" },
            plugin.package,
            path.display().to_string(),
        )
        .expect("write to a String");
        writeln!(
            all,
            "    Artifact {{ package: {:?}, path: {constant}, test_only: {} }},",
            plugin.package, plugin.test_only
        )
        .expect("write to a String");
    }
    all.push_str("];\n");
    code.push_str(&all);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("artifacts.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}

/// The plugin packages: workspace members under `plugins/` with a `cdylib` library.
fn discover(cargo: &std::ffi::OsStr, root: &Path) -> Vec<Plugin> {
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .unwrap_or_else(|e| panic!("run cargo metadata: {e}"));
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let plugins_dir = root.join("plugins");
    let testing_dir = plugins_dir.join("testing");
    let mut plugins: Vec<Plugin> = metadata["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .filter_map(|package| {
            let manifest = Path::new(package["manifest_path"].as_str()?);
            let cdylib = package["targets"].as_array()?.iter().any(|target| {
                target["crate_types"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|t| t == "cdylib"))
            });
            (cdylib && manifest.starts_with(&plugins_dir)).then(|| Plugin {
                package: package["name"].as_str().unwrap_or_default().to_owned(),
                test_only: manifest.starts_with(&testing_dir),
            })
        })
        .collect();
    plugins.sort_by(|a, b| a.package.cmp(&b.package));
    assert!(
        !plugins.is_empty(),
        "no plugin crate found under {}",
        plugins_dir.display()
    );
    plugins
}

/// Installs the wasm target with rustup when the toolchain lacks it (as a fresh clone's
/// first `cargo test` would), or explains how.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if sysroot.is_some_and(|root| root.join("lib/rustlib").join(TARGET).is_dir()) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup to build the plugins");
    let installed = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        installed,
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it to build the plugins"
    );
}

/// One `cargo build` of every plugin. Plugins drop their debug info (ten times smaller,
/// and faster to compile on load) but keep the name section, so a trap's wasm backtrace
/// still names the plugin's functions.
fn build(cargo: &std::ffi::OsStr, root: &Path, target_dir: &Path, plugins: &[Plugin]) {
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // What the outer cargo set for this build script, not for the plugins: its
        // flags for the host target, and clippy's driver when this runs under clippy.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for plugin in plugins {
        command.args(["-p", &plugin.package]);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for the plugins: {e}"));
    assert!(
        status.success(),
        "building the plugins for {TARGET} failed: {status}"
    );
}
