//! The load target: a bridge's MCP endpoint parsed from `--url`, held to loopback addresses
//! unless the user explicitly allows a remote host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::super::LabError;

/// Where `bench load` sends its calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// The URL as given, for messages and the report.
    pub url: String,
    /// The address connections go to.
    pub address: SocketAddr,
    /// The `Host` header: the host and port as written in the URL.
    pub host_header: String,
    /// The request path, e.g. `/mcp/demo`.
    pub path: String,
    /// Whether the path is the aggregated `/mcp` endpoint, where tool names carry a
    /// `{server}__` prefix.
    pub aggregated: bool,
    /// A bearer token for the MCP endpoint (`http.auth_token`).
    #[serde(skip)]
    pub token: Option<String>,
    /// A bearer token for `/admin/*` (`http.admin_token`).
    #[serde(skip)]
    pub admin_token: Option<String>,
}

impl Target {
    /// Parses `http://HOST:PORT/PATH`. HOST must be a loopback IP literal or `localhost`
    /// unless `allow_remote` is set: a load test pointed at someone else's server by a typo
    /// must not start. No name is looked up for that check, so no DNS query leaves the
    /// machine before the user has said that a remote host is meant.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, LabError> {
        let error = |message: String| LabError::Load {
            target: url.to_owned(),
            message,
        };
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(error(
                "the URL must start with http:// (the load generator speaks plain HTTP/1.1)"
                    .to_owned(),
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/mcp"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(error("the URL needs a host and no user info".to_owned()));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| error(format!("cannot read host and port from {authority:?}")))?;
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) if host.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            Err(_) => None,
        };
        let loopback = ip.is_some_and(|ip| ip.is_loopback());
        if !loopback && !allow_remote {
            return Err(error(format!(
                "{host} is not a loopback address; load tests only hit 127.0.0.1, ::1 or \
                 localhost unless you pass --allow-remote"
            )));
        }
        let address = match ip {
            Some(ip) => SocketAddr::new(ip, port),
            None => resolve(host, port).map_err(error)?,
        };
        let path = path.split('#').next().unwrap_or(path).to_owned();
        let route = path
            .split('?')
            .next()
            .unwrap_or(&path)
            .trim_end_matches('/');
        Ok(Target {
            url: url.to_owned(),
            address,
            host_header: authority.to_owned(),
            aggregated: route == "/mcp",
            path,
            token: None,
            admin_token: None,
        })
    }

    /// A target on a loopback port, for benches and tests that start the bridge themselves.
    pub fn local(address: SocketAddr, path: &str) -> Target {
        Target {
            url: format!("http://{address}{path}"),
            address,
            host_header: address.to_string(),
            aggregated: path.trim_end_matches('/') == "/mcp",
            path: path.to_owned(),
            token: None,
            admin_token: None,
        }
    }
}

/// Splits `host:port` or `[v6]:port`; the port defaults to 80.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        return match &rest[end + 1..] {
            "" => Some((host, 80)),
            port => Some((host, port.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, 80)),
    }
}

/// Looks a remote host name up; only reached with `--allow-remote`.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {host}: {error}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_parse() {
        let target = Target::parse("http://127.0.0.1:8080/mcp/demo", false).ok();
        let target = target.map(|t| (t.address.port(), t.path, t.aggregated));
        assert_eq!(target, Some((8080, "/mcp/demo".to_owned(), false)));
        let aggregated = Target::parse("http://localhost:9/mcp", false).map(|t| t.aggregated);
        assert!(matches!(aggregated, Ok(true)));
        assert!(Target::parse("http://[::1]:9/mcp/x", false).is_ok());
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        let refused = Target::parse("http://10.1.2.3:8080/mcp", false);
        let message = refused
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(message.contains("--allow-remote"), "{message}");
        assert!(Target::parse("http://10.1.2.3:8080/mcp", true).is_ok());
        assert!(Target::parse("https://127.0.0.1/mcp", false).is_err());
    }
}
