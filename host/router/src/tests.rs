//! The router's promises to the front, against a real (tiny) stdio server: a server
//! request reaches the call's client with a handle, and the answer given to that handle
//! reaches the process that asked, under the server's own id.

use serde_json::{Value, json};

use super::{CallEvent, Caller, Router, Step};
use mcp_bridge_metrics::Registry;

/// A shell server: answers `initialize`, then answers the first call by asking the
/// client `roots/list` (id "ask-1") and returning the client's answer line as its result.
const ASKING_SERVER: &str = r#"id_of() { printf '%s' "$1" | sed -n 's/.*"id":\([0-9]*\).*/\1/p'; }
read -r line
printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"asker","version":"1"}}}\n' "$(id_of "$line")"
read -r initialized
read -r call
printf '{"jsonrpc":"2.0","id":"ask-1","method":"roots/list"}\n'
read -r answer
printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[],"answer":%s}}\n' "$(id_of "$call")" "$answer"
exec cat >/dev/null"#;

fn router() -> Router {
    let text = format!(
        r#"
        [servers.asker]
        command = "sh"
        args = ["-c", '''{ASKING_SERVER}''']
        exclusive = true
        min_connections = 0
        connection_timeout = "20s"
        request_timeout = "20s"
        enable_health_checks = false
        "#
    );
    let config = mcp_bridge_config::load_str(&text, "router-test.toml")
        .expect("the test configuration is valid");
    Router::start(&config, &Registry::new(), None)
}

#[tokio::test]
async fn a_client_answer_goes_back_through_the_router_to_the_process_that_asked() {
    let router = router();
    let server = router.server("asker").expect("configured").clone();
    let introduction = server.introduce().await.expect("the server starts");
    assert_eq!(introduction.server_info["name"], "asker");

    let request =
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "ask"}});
    let mut call = router
        .forward(&server, request, true, &Caller::default())
        .await;
    let Step::Event(CallEvent::ServerRequest { request, answer }) = call.next().await else {
        panic!("the server's request should reach the call's client first");
    };
    assert_eq!(request["method"], "roots/list");
    assert_eq!(
        request["id"], "ask-1",
        "the server's own id, for the front to replace"
    );

    let client_answer = json!({"jsonrpc": "2.0", "id": "ask-1", "result": {"roots": []}});
    answer
        .send(&client_answer)
        .await
        .expect("the process is running");
    let Step::Done(Ok(response)) = call.next().await else {
        panic!("the call should finish with the server's response");
    };
    assert_eq!(response["result"]["answer"], client_answer);
    router.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_describe_every_server() {
    let router = router();
    // min_connections = 0: nothing runs yet and nothing is expected to.
    assert!(router.servers_not_ready().is_empty());
    router.wait_all_ready().await;
    let summary = router.health();
    assert!(!summary.is_unhealthy());
    let report: &Value = &summary.servers["asker"];
    assert_eq!(report["ready_processes"], 1);
    assert_eq!(router.servers()[0].description().capabilities(), &json!({}));
    router.shutdown().await;
}
