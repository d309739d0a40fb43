//! The quickest end-to-end check: the embedded-default style config serves a call.

use serde_json::json;

use crate::support::{RawSession, demo_server_toml, start_bridge};

#[tokio::test]
async fn serves_a_demo_call_through_a_session() -> anyhow::Result<()> {
    let bridge = start_bridge(&demo_server_toml("demo", &[], ""))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let response = session
        .call_tool(json!(7), "get_today_metrics", json!({}))
        .await?;
    assert_eq!(response["id"], 7);
    assert_eq!(
        response["result"]["structuredContent"]["total_tasks"], 5,
        "{response}"
    );
    Ok(())
}
