//! `publish-plugins DIR`: copies every built plugin into DIR (`NAME.wasm` for the
//! examples, `testing/NAME.wasm` for the test-only plugins), the way operators are told
//! to publish: a temporary name, then a rename, so a watcher never sees half a file.
//! `publish-plugins --packages` lists the plugin packages, one a line.
//!
//! `scripts/build-plugins.sh` runs it; building it runs the plugins' one cargo build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--packages" => {
            for artifact in plugin_artifacts::ALL {
                println!("{}", artifact.package);
            }
            ExitCode::SUCCESS
        }
        [dir] if !dir.starts_with('-') => match publish(Path::new(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("publish-plugins: {error}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: publish-plugins DIR | publish-plugins --packages");
            ExitCode::from(2)
        }
    }
}

fn publish(dir: &Path) -> Result<(), String> {
    for artifact in plugin_artifacts::ALL {
        let dest = dir.join(artifact.published_name());
        let parent = dest.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
        let bytes =
            std::fs::read(artifact.path).map_err(|e| format!("read {}: {e}", artifact.path))?;
        if std::fs::read(&dest).ok().as_deref() != Some(bytes.as_slice()) {
            let file_name = dest
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("plugin");
            let temporary: PathBuf =
                parent.join(format!(".{file_name}.tmp.{}", std::process::id()));
            std::fs::write(&temporary, &bytes)
                .map_err(|e| format!("write {}: {e}", temporary.display()))?;
            std::fs::rename(&temporary, &dest)
                .map_err(|e| format!("rename to {}: {e}", dest.display()))?;
        }
        eprintln!(
            "build-plugins: {} ({} KiB, {})",
            dest.display(),
            bytes.len() / 1024,
            artifact.package
        );
    }
    Ok(())
}
