//! The plugins under `plugins/`, built for `wasm32-wasip2` by this crate's build script
//! in one cargo invocation, as paths to their `.wasm` components. Tests and benches
//! name a plugin by its constant (`plugin_artifacts::SEED_TTL_TABLE`); cargo rebuilds
//! the plugins whenever their sources, the SDK or `wit/` change.

/// One built plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// The cargo package, such as `seed-ttl-table`.
    pub package: &'static str,
    /// The component, an absolute path under the plugins' target directory.
    pub path: &'static str,
    /// A test-only plugin (under `plugins/testing/`) rather than an example.
    pub test_only: bool,
}

impl Artifact {
    /// Where `scripts/build-plugins.sh` publishes it, relative to `build/plugins/`:
    /// `seed-ttl-table.wasm` for an example, `testing/fault-trap.wasm` for a test plugin.
    pub fn published_name(&self) -> String {
        match self.test_only {
            true => format!("testing/{}.wasm", self.package),
            false => format!("{}.wasm", self.package),
        }
    }
}

/// The plugin built from the package `package`.
pub fn named(package: &str) -> Option<&'static Artifact> {
    ALL.iter().find(|artifact| artifact.package == package)
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_is_built_and_named() {
        for package in [
            "seed-ttl-table",
            "annotations",
            "crud-invalidation",
            "fault-trap",
        ] {
            let artifact = named(package).unwrap_or_else(|| panic!("no {package}"));
            assert!(
                std::path::Path::new(artifact.path).is_file(),
                "{artifact:?}"
            );
        }
        assert_eq!(
            named("fault-trap").map(Artifact::published_name).as_deref(),
            Some("testing/fault-trap.wasm")
        );
        assert_eq!(named("annotations").map(|a| a.path), Some(ANNOTATIONS));
        assert!(
            named("mcp-bridge-plugin-sdk").is_none(),
            "the SDK is a library, not a plugin"
        );
    }
}
