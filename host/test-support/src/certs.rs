//! Certificates made for one run with the `openssl` CLI: a private CA and a server
//! certificate it signs for `127.0.0.1` and `localhost`, so a service under test can serve
//! TLS on loopback and a client can trust it through the CA alone (never the system roots).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

/// How long one `openssl` invocation may take (key generation on a loaded machine included).
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// The PEM files [`generate`] writes: the CA's certificate (what a client trusts) and the
/// server's certificate and private key (what the server presents).
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    /// The CA's certificate, PEM.
    pub ca_file: PathBuf,
    /// The server's certificate, PEM, valid for `IP:127.0.0.1` and `DNS:localhost`.
    pub cert_file: PathBuf,
    /// The server's private key, PEM (unencrypted).
    pub key_file: PathBuf,
}

/// Makes a CA and a server certificate it signs, in `dir` (`ca.pem`, `ca.key`,
/// `server.pem`, `server.key`). P-256 keys: fast to generate and accepted by rustls and
/// OpenSSL alike. Valid for two days, far longer than any test run.
pub async fn generate(dir: &Path) -> Result<ServerCertificate> {
    let ca_key = dir.join("ca.key");
    let ca_file = dir.join("ca.pem");
    let key_file = dir.join("server.key");
    let request = dir.join("server.csr");
    let cert_file = dir.join("server.pem");
    let extensions = dir.join("server.ext");
    let ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

    let mut ca = openssl(&["req", "-x509", "-nodes", "-days", "2"]);
    ca.args(ec_key)
        .args(["-subj", "/CN=mcp-bridge test CA"])
        // rustls (webpki) insists on a CA that says it is one.
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_file);
    run(ca, "make the CA").await?;

    let mut csr = openssl(&["req", "-new", "-nodes"]);
    csr.args(ec_key)
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&request);
    run(csr, "make the server's key and request").await?;

    std::fs::write(
        &extensions,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .context("write the server certificate's extensions")?;
    let mut sign = openssl(&["x509", "-req", "-days", "2", "-CAcreateserial"]);
    sign.arg("-in")
        .arg(&request)
        .arg("-CA")
        .arg(&ca_file)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&extensions)
        .arg("-out")
        .arg(&cert_file);
    run(sign, "sign the server's certificate").await?;

    Ok(ServerCertificate {
        ca_file,
        cert_file,
        key_file,
    })
}

fn openssl(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("openssl");
    command.args(args).kill_on_drop(true);
    command
}

async fn run(mut command: tokio::process::Command, what: &str) -> Result<()> {
    let output = tokio::time::timeout(OPENSSL_TIMEOUT, command.output())
        .await
        .with_context(|| format!("openssl did not {what} within {OPENSSL_TIMEOUT:?}"))?
        .with_context(|| format!("run openssl to {what} (is the openssl CLI installed?)"))?;
    ensure!(
        output.status.success(),
        "openssl could not {what}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
