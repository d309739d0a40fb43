//! Request routing and the checks every route shares (Origin, bearer tokens), plus the
//! operational routes: metrics, health and readiness. The admin routes are the
//! application's ([`super::AdminRoutes`]): this module routes them and guards them.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::admin::AdminRequest;
use mcp_bridge_auth::AdminRefusal;

use super::error::FrontError;
use super::identity;
use super::mcp::{self, Endpoint, header_str, json_response};
use super::status_page::{STATUS_PAGE_PATHS, status_page};
use super::{AppState, Body};

/// Routes one request and records it in `mcp_bridge_http_requests_total`.
pub(crate) async fn handle(state: Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let (route, result) = route(&state, request, &path, &method).await;
    let response = match result {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    state
        .metrics
        .http_requests_total
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}

async fn route(
    state: &Arc<AppState>,
    request: Request<Incoming>,
    path: &str,
    method: &Method,
) -> (&'static str, Result<Response<Body>, FrontError>) {
    if path == "/mcp" || path == "/mcp/" {
        let result = match authenticated(state, request.headers(), path).await {
            Ok(caller) => mcp::handle(state.clone(), Endpoint::Aggregate, request, caller).await,
            Err(error) => Err(error),
        };
        return ("/mcp", result);
    }
    if let Some(name) = path.strip_prefix("/mcp/") {
        let name = name.trim_end_matches('/');
        let result = match authenticated(state, request.headers(), path).await {
            Err(error) => Err(error),
            Ok(caller) => match state.upstream.server(name) {
                Some(server) => {
                    let endpoint = Endpoint::Server(server.clone());
                    mcp::handle(state.clone(), endpoint, request, caller).await
                }
                None => Err(unknown_server(state, name)),
            },
        };
        return ("/mcp/{server}", result);
    }
    if path == identity::METADATA_PATH || path.starts_with(METADATA_PATH_PREFIX) {
        let result = match (method, identity::metadata(state)) {
            (&Method::GET, Some(metadata)) => Ok(json_response(StatusCode::OK, &metadata)),
            (&Method::GET, None) => Err(FrontError::NotFound(
                "no protected-resource metadata: bearer JWTs are not configured ([auth.jwt])"
                    .to_owned(),
            )),
            _ => Err(FrontError::MethodNotAllowed(method.clone())),
        };
        return (identity::METADATA_PATH, result);
    }
    let result = match (method, path) {
        (&Method::GET, "/metrics") => {
            // The entry and byte gauges are sampled when read.
            state.upstream.sample_gauges();
            Ok(text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                state.registry.render(),
            ))
        }
        (&Method::GET, "/healthz") => Ok(text(StatusCode::OK, "text/plain", "ok\n".to_owned())),
        (&Method::GET, "/readyz") => Ok(readyz(state)),
        (&Method::GET, "/health") => Ok(health(state)),
        (&Method::GET, path) if STATUS_PAGE_PATHS.contains(&path) => {
            let page = status_page();
            Ok(html_page(page.body.clone(), &page.content_security_policy))
        }
        (_, path) if OPERATIONAL_ROUTES.contains(&path) => {
            Err(FrontError::MethodNotAllowed(method.clone()))
        }
        _ if admin_path(state, path).is_some() => admin(state, request, path, method).await,
        _ => Err(FrontError::NotFound(format!("no route for {path}"))),
    };
    let label = OPERATIONAL_ROUTES
        .iter()
        .chain(STATUS_PAGE_PATHS.iter())
        .find(|route| **route == path)
        .copied()
        .or_else(|| admin_path(state, path))
        .unwrap_or("other");
    (label, result)
}

/// Routes other than the MCP and admin endpoints; also values of the `route` metric label.
const OPERATIONAL_ROUTES: [&str; 4] = ["/metrics", "/healthz", "/readyz", "/health"];

/// `path` as one of the application's admin routes lists it.
fn admin_path(state: &AppState, path: &str) -> Option<&'static str> {
    state
        .admin
        .routes()
        .iter()
        .map(|(_, route)| *route)
        .find(|route| *route == path)
}

/// An admin route: guarded by the admin credential, answered by the application's
/// [`super::AdminRoutes`] as JSON.
async fn admin(
    state: &Arc<AppState>,
    request: Request<Incoming>,
    path: &str,
    method: &Method,
) -> Result<Response<Body>, FrontError> {
    let Some((_, route)) = state
        .admin
        .routes()
        .iter()
        .find(|(route_method, route)| route_method == method && *route == path)
    else {
        return Err(FrontError::MethodNotAllowed(method.clone()));
    };
    admin_guard(state, request.headers()).await?;
    let request = AdminRequest::new(method.clone(), route, request.into_body(), state);
    match state.admin.answer(request).await? {
        super::AdminReply::Json(answer) => Ok(json_response(StatusCode::OK, &answer)),
        // The lab page is self-contained and runs no script: nothing else may load.
        super::AdminReply::Html(page) => Ok(html_page(
            bytes::Bytes::from(page),
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        )),
    }
}

/// A self-contained HTML page under `policy` (its content security policy), never
/// sniffed as anything else, framed, or leaking its URL as a referrer.
fn html_page(page: bytes::Bytes, policy: &str) -> Response<Body> {
    let mut response = mcp::full_response(StatusCode::OK, Some("text/html; charset=utf-8"), page);
    let headers = response.headers_mut();
    // A policy is ASCII built from constants and base64 hashes; should it ever not be a
    // valid header value, the strictest policy keeps the page from running anything.
    let policy = HeaderValue::from_str(policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The RFC 9728 metadata of a resource with a path lives under this prefix.
const METADATA_PATH_PREFIX: &str = "/.well-known/oauth-protected-resource/";

/// Rejects requests while shutting down and from a browser origin that is not allowed
/// (DNS-rebinding protection); every guarded route checks these first.
fn common_checks(state: &AppState, headers: &HeaderMap) -> Result<(), FrontError> {
    if state.is_shutting_down() {
        return Err(FrontError::ShuttingDown);
    }
    if let Some(origin) = header_str(headers, header::ORIGIN.as_str())
        && !origin_allowed(&state.http.allowed_origins, origin)
    {
        return Err(FrontError::ForbiddenOrigin(origin.to_owned()));
    }
    Ok(())
}

/// The caller of an `/mcp*` request: its credential (a JWT, an API key or the shared
/// `http.auth_token`) checked by the identity layer; anonymous when none is configured.
/// A refusal is audited and answered with the OAuth challenge.
async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<identity::Caller, FrontError> {
    common_checks(state, headers)?;
    identity::authenticate(state, headers)
        .await
        .inspect_err(|error| {
            if let FrontError::Auth { error, .. } = error {
                super::audit::unauthenticated(state, path, error.reason());
            }
        })
}

/// `/admin/*` needs `http.admin_token`, or (with JWTs or API keys) a principal holding one
/// of `auth.admin_roles`. When only `http.auth_token` is set, the admin routes are closed
/// (403): the token every client holds does not grant admin. With no credential at all
/// they are open, which `check_exposure` allows only on a loopback address or with
/// `--insecure-listen`.
async fn admin_guard(state: &AppState, headers: &HeaderMap) -> Result<(), FrontError> {
    common_checks(state, headers)?;
    let authorization = header_str(headers, header::AUTHORIZATION.as_str());
    let identity = state.identity.current();
    if identity.authenticator.admin_is_open()
        && state.http.listen.ip().is_loopback()
        && let Some(host) = header_str(headers, header::HOST.as_str())
        && !open_admin_host_allowed(&state.http.allowed_origins, host)
    {
        return Err(FrontError::ForbiddenHost(host.to_owned()));
    }
    match identity.authenticator.authorize_admin(authorization).await {
        Ok(()) => Ok(()),
        Err(AdminRefusal::Disabled) => Err(FrontError::AdminDisabled),
        Err(AdminRefusal::NotAdmin { principal, roles }) => {
            Err(FrontError::NotAdmin { principal, roles })
        }
        Err(AdminRefusal::Unauthorized(_)) => Err(FrontError::Unauthorized),
    }
}

/// Whether an open admin route (no admin credential, loopback listener) may answer a request
/// addressed to `host` (the Host header). A web page on another site can reach a loopback
/// bridge through DNS rebinding (its name made to resolve to 127.0.0.1), and its same-origin
/// GETs carry no Origin header for `common_checks` to refuse; they do carry the page's name
/// in Host. So only loopback names are answered (`localhost`, a loopback address such as
/// 127.0.0.1 or `[::1]`, with any port), or a host an `http.allowed_origins` entry names
/// over http or https. A request without Host (HTTP/1.0) cannot come from a browser and
/// is not refused here.
fn open_admin_host_allowed(allowed_origins: &[String], host: &str) -> bool {
    mcp_bridge_config::is_loopback_authority(host)
        || ["http", "https"]
            .iter()
            .any(|scheme| origin_allowed(allowed_origins, &format!("{scheme}://{host}")))
}

/// Refuses to serve a non-loopback address without a client credential unless the operator
/// says `--insecure-listen`: the bridge starts processes on its callers' behalf, so an open
/// bridge on a network lets anyone run them (and, with no token at all, use the admin routes).
pub fn check_exposure(
    http: &mcp_bridge_config::HttpConfig,
    auth: &mcp_bridge_config::AuthConfig,
    insecure_listen: bool,
) -> Result<(), String> {
    if http.listen.ip().is_loopback() || http.auth_token.is_some() || auth.has_identities() {
        return Ok(());
    }
    let admin = if http.admin_token.is_some() {
        "the admin routes need http.admin_token"
    } else {
        "the admin routes (/admin/*: pids, cache, plugins) are open too"
    };
    if insecure_listen {
        tracing::warn!(
            listen = %http.listen,
            "INSECURE: listening on a non-loopback address without http.auth_token (--insecure-listen): anyone who can reach {} can call every server through the bridge; {admin}",
            http.listen
        );
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {} without http.auth_token: anyone who can reach it could run the configured servers through the bridge, and {admin}. Set http.auth_token (and http.admin_token), listen on a loopback address such as 127.0.0.1, or pass --insecure-listen if something in front of the bridge authenticates every request",
        http.listen
    ))
}

/// An allow-list entry matches exactly, or (`scheme://host` or `scheme://host:*`) any
/// port of that host; `*` allows every origin.
pub(crate) fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|entry| {
        if entry == "*" || entry == origin {
            return true;
        }
        let base = entry.strip_suffix(":*").unwrap_or(entry);
        let has_port = base
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.chars().all(|c| c.is_ascii_digit()));
        if has_port {
            return false;
        }
        origin
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|port| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
    })
}

fn unknown_server(state: &AppState, name: &str) -> FrontError {
    let known: Vec<&str> = state
        .upstream
        .servers()
        .iter()
        .map(|server| &**server.name())
        .collect();
    FrontError::UnknownServer {
        name: name.to_owned(),
        known: known.join(", "),
    }
}

fn error_response(error: &FrontError) -> Response<Body> {
    let mut response = json_response(error.status(), &error.to_jsonrpc(Value::Null));
    match error {
        FrontError::Unauthorized => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        FrontError::Auth { challenge, .. } => {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        FrontError::MethodNotAllowed(_) => {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        _ => {}
    }
    response
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    mcp::full_response(status, Some(content_type), bytes::Bytes::from(body))
}

/// Ready when every required server has a ready process (or, with
/// `min_connections = 0`, is not failing to start).
fn readyz(state: &AppState) -> Response<Body> {
    let waiting = state.upstream.servers_not_ready();
    let waiting: Vec<&str> = waiting.iter().map(|name| &**name).collect();
    if waiting.is_empty() {
        return json_response(StatusCode::OK, &json!({ "ready": true }));
    }
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "ready": false, "waiting_for": waiting }),
    )
}

/// Per-server health in the seed's terms; 503 when any required server is unhealthy.
fn health(state: &AppState) -> Response<Body> {
    let summary = state.upstream.health();
    let status = if summary.is_unhealthy() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut body = json!({
        "status": summary.status,
        "uptime_seconds": state.started_at.elapsed().as_secs_f64(),
        "servers": summary.servers,
    });
    if let Some(tier) = summary.shared_tier {
        body["shared_tier"] = tier;
    }
    json_response(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_allow_list_matching() {
        let allowed = vec![
            "http://localhost".to_owned(),
            "https://app.example:8443".to_owned(),
        ];
        assert!(origin_allowed(&allowed, "http://localhost"));
        assert!(origin_allowed(&allowed, "http://localhost:3000"));
        assert!(!origin_allowed(&allowed, "http://localhost.evil.com"));
        assert!(!origin_allowed(&allowed, "http://localhost:3000.evil.com"));
        assert!(origin_allowed(&allowed, "https://app.example:8443"));
        assert!(!origin_allowed(&allowed, "https://app.example:9999"));
        assert!(!origin_allowed(&allowed, "https://evil.example"));
        assert!(origin_allowed(
            &["http://127.0.0.1:*".to_owned()],
            "http://127.0.0.1:8080"
        ));
        assert!(origin_allowed(&["*".to_owned()], "https://anything"));
    }

    #[test]
    fn an_open_admin_route_answers_loopback_hosts_and_allowed_origins_only() {
        let defaults: Vec<String> = mcp_bridge_config::DEFAULT_ALLOWED_ORIGINS
            .iter()
            .map(|origin| (*origin).to_owned())
            .collect();
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.0.0.2:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(open_admin_host_allowed(&defaults, host), "{host}");
        }
        // A rebinding attacker's name, whatever it resolves to, and names that merely start
        // like a loopback one.
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example:8080",
            "127.0.0.1.evil.example",
            "[::2]:8080",
            "10.0.0.1:8080",
            "",
        ] {
            assert!(!open_admin_host_allowed(&defaults, host), "{host:?}");
        }
        // A name the operator allowed as an origin (a proxy in front, say) is answered.
        let proxied = vec!["https://bridge.internal:*".to_owned()];
        assert!(open_admin_host_allowed(&proxied, "bridge.internal:8443"));
        assert!(!open_admin_host_allowed(&proxied, "bridge.internal"));
        assert!(open_admin_host_allowed(&["*".to_owned()], "evil.example"));
    }

    #[test]
    fn exposure_needs_a_token_off_loopback() {
        let mut http = mcp_bridge_config::HttpConfig::default();
        assert!(
            check_exposure(&http, &Default::default(), false).is_ok(),
            "loopback without a token"
        );
        http.listen = "0.0.0.0:8080".parse().unwrap();
        let refused = check_exposure(&http, &Default::default(), false).unwrap_err();
        assert!(refused.contains("--insecure-listen") && refused.contains("http.auth_token"));
        assert!(check_exposure(&http, &Default::default(), true).is_ok());
        http.auth_token = Some(mcp_bridge_config::Secret::new("t".to_owned()));
        assert!(check_exposure(&http, &Default::default(), false).is_ok());
    }
}
