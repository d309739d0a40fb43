//! The admin API (`/admin/*`), composed from the parts the application wires together:
//! the pools' stats, the response cache, the plugin runtime and the trace recorder. The
//! front routes these requests and checks the admin credential; this module answers them.

use std::sync::Arc;

use futures_util::FutureExt as _;
use http::Method;
use serde_json::{Value, json};

use mcp_bridge::cache::InvalidationReason;
use mcp_bridge::front::{AdminAnswer, AdminReply, AdminRequest, AdminRoutes, FrontError};
use mcp_bridge::lab::explain::{self, ExplainRequest, ServerFacts};
use mcp_bridge::lab::shadow::Shadow;
use mcp_bridge::plugin::PluginRuntime;
use mcp_bridge::policy::Invalidation;
use mcp_bridge::router::{CacheLayer, Server};
use mcp_bridge::trace::Recorder;

/// Every admin route, as the front routes them.
const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/admin/status"),
    (Method::GET, "/admin/stats"),
    (Method::GET, "/admin/cache/stats"),
    (Method::DELETE, "/admin/cache"),
    (Method::POST, "/admin/cache/invalidate"),
    (Method::GET, "/admin/plugins"),
    (Method::POST, "/admin/plugins/reload"),
    (Method::POST, "/admin/plugins/quarantine/lift"),
    (Method::POST, "/admin/explain"),
    (Method::GET, "/admin/record"),
    (Method::POST, "/admin/record/start"),
    (Method::POST, "/admin/record/stop"),
    (Method::GET, "/admin/lab"),
    (Method::GET, "/admin/lab/report.json"),
    (Method::GET, "/admin/lab/page"),
];

/// How often the live lab page reloads itself, in seconds.
const LAB_PAGE_REFRESH_SECONDS: u32 = 5;

/// What the admin routes read and act on; each part is absent when the bridge runs
/// without it, and its routes then answer 404 saying how to turn it on.
pub(crate) struct Admin {
    pub(crate) servers: Vec<Server>,
    pub(crate) cache: Option<Arc<CacheLayer>>,
    pub(crate) plugins: Option<PluginRuntime>,
    pub(crate) recorder: Option<Arc<Recorder>>,
    pub(crate) shadow: Option<Arc<Shadow>>,
}

impl AdminRoutes for Admin {
    fn routes(&self) -> &'static [(Method, &'static str)] {
        ROUTES
    }

    fn answer<'a>(&'a self, request: AdminRequest<'a>) -> AdminAnswer<'a> {
        async move {
            if request.path() == "/admin/lab/page" {
                return Ok(AdminReply::Html(
                    self.shadow()?.page(LAB_PAGE_REFRESH_SECONDS),
                ));
            }
            self.answer_json(request).await.map(AdminReply::Json)
        }
        .boxed()
    }
}

/// What `/admin/status` is made of; a part that is off is the error saying how to turn
/// it on.
struct StatusParts {
    uptime_seconds: f64,
    health: Value,
    sessions: Value,
    servers: Vec<Value>,
    cache: Result<Value, FrontError>,
    plugins: Result<Value, FrontError>,
}

/// The `/admin/status` document: `version`, `uptime_seconds`, `health`, `sessions`,
/// `servers` (as `/admin/stats` lists them), and `cache` and `plugins`, each an object
/// with `enabled` and either its admin view's fields or the `reason` it is off.
fn status_document(parts: StatusParts) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": parts.uptime_seconds,
        "health": parts.health,
        "sessions": parts.sessions,
        "servers": parts.servers,
        "cache": optional_part(parts.cache),
        "plugins": optional_part(parts.plugins),
    })
}

fn optional_part(part: Result<Value, FrontError>) -> Value {
    match part {
        Ok(Value::Object(mut fields)) => {
            fields.insert("enabled".to_owned(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(other) => json!({ "enabled": true, "value": other }),
        Err(FrontError::NotFound(reason)) => json!({ "enabled": false, "reason": reason }),
        Err(error) => json!({ "enabled": false, "reason": error.to_string() }),
    }
}

impl Admin {
    /// Every route that answers JSON.
    async fn answer_json(&self, request: AdminRequest<'_>) -> Result<Value, FrontError> {
        match (request.method().clone(), request.path()) {
            (Method::GET, "/admin/status") => Ok(self.status(&request)),
            (Method::GET, "/admin/stats") => Ok(self.stats(&request)),
            (Method::GET, "/admin/cache/stats") => self.cache_stats(),
            (Method::DELETE, "/admin/cache") => {
                Ok(json!({ "dropped": self.cache()?.clear_everywhere().await }))
            }
            (Method::POST, "/admin/cache/invalidate") => self.cache_invalidate(request).await,
            (Method::GET, "/admin/plugins") => {
                let host = &self.plugins()?.host;
                Ok(blocking(|| host.snapshot()))
            }
            (Method::POST, "/admin/plugins/reload") => self.plugins_reload().await,
            (Method::POST, "/admin/plugins/quarantine/lift") => self.lift_quarantine(request).await,
            (Method::POST, "/admin/explain") => self.explain(request).await,
            (Method::GET, "/admin/record") => Ok(self.recorder()?.status()),
            (Method::POST, "/admin/record/start") => self.record_toggle(true),
            (Method::POST, "/admin/record/stop") => self.record_toggle(false),
            (Method::GET, "/admin/lab") => Ok(self.shadow()?.status()),
            // A report is numbers, strings and lists (a NaN becomes null): encoding
            // it into a `Value` cannot fail.
            (Method::GET, "/admin/lab/report.json") => {
                Ok(serde_json::to_value(self.shadow()?.report()).unwrap_or_default())
            }
            (_, path) => Err(FrontError::NotFound(format!("no route for {path}"))),
        }
    }

    /// `GET /admin/stats`: uptime, sessions and every server's pool.
    fn stats(&self, request: &AdminRequest<'_>) -> Value {
        let servers: Vec<Value> = self.servers.iter().map(Server::stats).collect();
        json!({
            "uptime_seconds": request.uptime_seconds(),
            "sessions": request.sessions(),
            "calls_in_flight_by_principal": request.calls_in_flight_by_principal(),
            "servers": servers,
        })
    }

    /// `GET /admin/status`: everything the status page (`/`) shows, in one answer so the
    /// page makes one request per refresh.
    fn status(&self, request: &AdminRequest<'_>) -> Value {
        status_document(StatusParts {
            uptime_seconds: request.uptime_seconds(),
            health: request.health(),
            sessions: request.sessions(),
            servers: self.servers.iter().map(Server::stats).collect(),
            cache: self.cache_stats(),
            plugins: self
                .plugins()
                .map(|plugins| blocking(|| plugins.host.snapshot())),
        })
    }

    /// `GET /admin/cache/stats`: this replica's counters, and the shared tier's state.
    fn cache_stats(&self) -> Result<Value, FrontError> {
        let layer = self.cache()?;
        let mut stats = layer.cache.stats();
        if let Some(tier) = layer.shared_tier() {
            stats["shared"] = tier.status();
        }
        Ok(stats)
    }

    fn cache(&self) -> Result<&CacheLayer, FrontError> {
        self.cache.as_deref().ok_or_else(|| {
            FrontError::NotFound("the cache is disabled ([cache] enabled = false)".to_owned())
        })
    }

    fn plugins(&self) -> Result<&PluginRuntime, FrontError> {
        self.plugins.as_ref().ok_or_else(|| {
            FrontError::NotFound(
                "no policy plugins are running: set [plugins] dir (and keep the cache enabled)"
                    .to_owned(),
            )
        })
    }

    fn recorder(&self) -> Result<&Recorder, FrontError> {
        self.recorder.as_deref().ok_or_else(|| {
            FrontError::NotFound(
                "this bridge is not recording: start it with `serve --record FILE` (add --record-paused to begin paused)"
                    .to_owned(),
            )
        })
    }

    fn shadow(&self) -> Result<&Shadow, FrontError> {
        self.shadow.as_deref().ok_or_else(|| {
            FrontError::NotFound(
                "shadow evaluation is off: list candidate policies under [[lab.shadow.candidate]] (with the cache on)"
                    .to_owned(),
            )
        })
    }

    /// `POST /admin/cache/invalidate` with one of `{"server"}`, `{"server","tool"}`,
    /// `{"tag"}` or `{"key"}`.
    async fn cache_invalidate(&self, request: AdminRequest<'_>) -> Result<Value, FrontError> {
        let cache = self.cache()?;
        let spec = request.json_body().await?;
        let text = |field: &str| spec.get(field).and_then(Value::as_str).map(str::to_owned);
        let invalidation = match (text("server"), text("tool"), text("tag"), text("key")) {
            (Some(server), Some(tool), None, None) => Invalidation::Tool { server, tool },
            (Some(server), None, None, None) => Invalidation::Server(server),
            (None, None, Some(tag), None) => Invalidation::Tag(tag),
            (None, None, None, Some(key)) => Invalidation::Key(key),
            _ => {
                return Err(FrontError::InvalidRequest(
                    "send one of {\"server\"}, {\"server\", \"tool\"}, {\"tag\"} or {\"key\"}"
                        .to_owned(),
                ));
            }
        };
        let dropped = cache
            .cache
            .invalidate(&invalidation, InvalidationReason::Admin);
        if let Some(tier) = cache.shared_tier() {
            tier.invalidate(vec![mcp_bridge::cache::dependency_of(&invalidation)])
                .await;
        }
        Ok(json!({ "dropped": dropped }))
    }

    /// `POST /admin/plugins/reload`: rescans the plugin directory now, retrying files
    /// rejected before, and reports what was loaded, unloaded and rejected.
    async fn plugins_reload(&self) -> Result<Value, FrontError> {
        let report = self
            .plugins()?
            .watcher
            .rescan()
            .await
            .ok_or_else(|| FrontError::NotFound("the plugin watcher has stopped".to_owned()))?;
        Ok(serde_json::to_value(&report).unwrap_or_default())
    }

    /// `POST /admin/plugins/quarantine/lift` with `{"binding"}` (everything the binding
    /// has quarantined), `{"binding","server"}` or `{"binding","server","tool"}`: the
    /// quarantined tools are asked again, each with an empty fault window.
    async fn lift_quarantine(&self, request: AdminRequest<'_>) -> Result<Value, FrontError> {
        let plugins = self.plugins()?;
        let spec = request.json_body().await?;
        let text = |field: &str| spec.get(field).and_then(Value::as_str);
        let (Some(binding), server, tool) = (text("binding"), text("server"), text("tool")) else {
            return Err(FrontError::InvalidRequest(
                "send {\"binding\"}, {\"binding\", \"server\"} or {\"binding\", \"server\", \"tool\"}"
                    .to_owned(),
            ));
        };
        if tool.is_some() && server.is_none() {
            return Err(FrontError::InvalidRequest(
                "a tool is lifted with its server: {\"binding\", \"server\", \"tool\"}".to_owned(),
            ));
        }
        let lifted =
            blocking(|| plugins.host.lift_quarantine(binding, server, tool)).ok_or_else(|| {
                FrontError::NotFound(format!("no serving plugin binding `{binding}`"))
            })?;
        Ok(json!({ "lifted": lifted }))
    }

    /// `POST /admin/explain` with `{"server", "method"?, "tool" | "uri", "arguments"?,
    /// "principal"?}`: what the serving chain decides for that call, each binding asked on
    /// its own (a plugin's fault is reported, never counted against it), with the key
    /// and partition, from the server's catalogue as the pool learned it. No backend is
    /// called. A bad field is a 400 naming it; an unknown server a 404.
    async fn explain(&self, request: AdminRequest<'_>) -> Result<Value, FrontError> {
        let layer = self.cache()?;
        let body = request.json_body().await?;
        let call = ExplainRequest::from_json(&body)
            .map_err(|error| FrontError::InvalidRequest(error.to_string()))?;
        let Some(server) = self
            .servers
            .iter()
            .find(|server| **server.name() == *call.server)
        else {
            let known: Vec<&str> = self.servers.iter().map(|server| &**server.name()).collect();
            return Err(FrontError::NotFound(format!(
                "server: no server `{}` (this bridge serves: {})",
                call.server,
                known.join(", ")
            )));
        };
        let mut facts = ServerFacts::of_config(server.config());
        if let Some(tool) = call.tool() {
            facts.catalogue = server.listed_tool(tool);
        }
        let policies = layer.policies();
        Ok(blocking(|| explain::explain(&policies, &call, &facts)))
    }

    /// `POST /admin/record/start` and `/stop`: resume or pause the trace; the answer is
    /// the recorder's status, with `was_active` saying whether anything changed.
    fn record_toggle(&self, active: bool) -> Result<Value, FrontError> {
        let recorder = self.recorder()?;
        let was_active = recorder.set_active(active);
        let mut status = recorder.status();
        if let Some(object) = status.as_object_mut() {
            object.insert("was_active".to_owned(), was_active.into());
        }
        Ok(status)
    }
}

/// Runs `work` that may block (it takes the plugin host's lock, which a reload holds while
/// it starts bindings, or calls into plugins) without stalling the runtime: on the
/// multi-threaded runtime `serve` runs, the worker hands its other tasks on first.
fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cache: Result<Value, FrontError>, plugins: Result<Value, FrontError>) -> StatusParts {
        StatusParts {
            uptime_seconds: 12.5,
            health: json!({ "status": "healthy", "servers": { "demo": { "status": "healthy" } } }),
            sessions: json!({ "open": 1, "max": 100 }),
            servers: vec![json!({ "server": "demo", "processes": [{ "pid": 7 }] })],
            cache,
            plugins,
        }
    }

    #[test]
    fn the_status_document_has_every_part_the_page_reads() {
        let status = status_document(parts(
            Ok(json!({ "hits": 3, "misses": 1, "hit_rate": 0.75, "bytes": 10, "entries": 1 })),
            Ok(json!({ "generation": 2, "plugins": [], "recent_reloads": [] })),
        ));
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(status["uptime_seconds"], 12.5);
        assert_eq!(status["health"]["servers"]["demo"]["status"], "healthy");
        assert_eq!(status["sessions"]["open"], 1);
        assert_eq!(status["servers"][0]["processes"][0]["pid"], 7);
        assert_eq!(status["cache"]["enabled"], true);
        assert_eq!(status["cache"]["hit_rate"], 0.75);
        assert_eq!(status["plugins"]["enabled"], true);
        assert_eq!(status["plugins"]["generation"], 2);
        let keys: Vec<&str> = status
            .as_object()
            .map(|fields| fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "version",
                "uptime_seconds",
                "health",
                "sessions",
                "servers",
                "cache",
                "plugins"
            ]
        );
    }

    #[test]
    fn a_part_that_is_off_says_why() {
        let status = status_document(parts(
            Err(FrontError::NotFound("the cache is disabled".to_owned())),
            Err(FrontError::NotFound(
                "no policy plugins are running".to_owned(),
            )),
        ));
        assert_eq!(
            status["cache"],
            json!({ "enabled": false, "reason": "the cache is disabled" })
        );
        assert_eq!(status["plugins"]["enabled"], false);
        assert!(
            status["plugins"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("no policy plugins"))
        );
    }
}
