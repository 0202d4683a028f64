//! The browser-facing handshake policy (issue 16 items 4 and 5) with a Rust client: the
//! `Origin` allow-list (global and per route) refused with 403 before any upstream connect,
//! and `handshake.failure = "close"` (global and per route): 101, then a close code and the
//! reason. `chromium.rs` shows the same through a real browser.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    read_close, refused, registry_xml, Inst, ServiceOptions, TestAgent, TestService,
};

/// An echo service registered as DISCOVERABLECLIENT with `metadata` on its `ws__v1` route, a
/// second route `ws/open` without any, and an agent with `extra` TOML. The service counts the
/// connections it accepted.
async fn setup(
    metadata: &[(&str, &str)],
    extra: &str,
) -> (
    TestService,
    TestAgent,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = TestService::start(ServiceOptions {
        accepted: Some(tx),
        ..Default::default()
    })
    .await;
    let mut inst = Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port());
    inst.routes
        .push(("ws__open", "ws/open", "/discoverableclient/ws"));
    inst.metadata = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let agent = TestAgent::with_registry_file(&registry_xml(&[inst]), extra).await;
    (svc, agent, rx)
}

async fn echoes(agent: &TestAgent, path: &str, headers: &[(&str, &str)]) {
    let (mut ws, _) = agent.connect(path, headers).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(got, Ok(Some(Ok(Message::Text(ref t)))) if t.as_str() == "hi"),
        "{path}: {got:?}"
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn origins_off_the_list_get_403_before_any_upstream_connect() {
    let (_svc, agent, mut accepted) = setup(
        &[(
            "apiml.routes.ws__open.allowedOrigins",
            "https://a.test, https://*.b.test",
        )],
        "[handshake]\nallowed_origins = [\"https://app.example.com\"]\n",
    )
    .await;
    // The route's list in force shows in the routing table.
    let (_, routes) = agent.get_json("/application/routes").await;
    assert!(
        routes
            .to_string()
            .contains(r#""allowedOrigins":["https://a.test","https://*.b.test"]"#),
        "{routes}"
    );
    // The global list on ws/v1.
    echoes(
        &agent,
        "/ws/v1/discoverableclient/x",
        &[("Origin", "https://app.example.com")],
    )
    .await;
    echoes(&agent, "/ws/v1/discoverableclient/x", &[]).await; // not a browser page
    assert_eq!(accepted.recv().await, Some(()));
    assert_eq!(accepted.recv().await, Some(()));
    for origin in [
        "https://evil.test",
        "null",
        "https://app.example.com.evil.test",
    ] {
        let (status, body) = refused(
            agent
                .connect("/ws/v1/discoverableclient/x", &[("Origin", origin)])
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body["message"].as_str().unwrap().contains(origin), "{body}");
    }
    // The route's own list wins on ws/open.
    echoes(
        &agent,
        "/ws/open/discoverableclient/x",
        &[("Origin", "https://a.test")],
    )
    .await;
    echoes(
        &agent,
        "/ws/open/discoverableclient/x",
        &[("Origin", "https://x.b.test")],
    )
    .await;
    let (status, _) = refused(
        agent
            .connect(
                "/ws/open/discoverableclient/x",
                &[("Origin", "https://app.example.com")],
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);
    // Four sessions reached the service; none of the refused upgrades did.
    assert_eq!(accepted.recv().await, Some(()));
    assert_eq!(accepted.recv().await, Some(()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        accepted.try_recv().is_err(),
        "a refused upgrade reached the service"
    );
    let (_, _, metrics) = agent.get("/application/prometheus", "").await;
    assert!(
        metrics.contains("wsrelay_handshake_failures_total{status=\"403\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn failure_close_answers_101_then_a_code_and_the_reason() {
    let down = TestService::start(ServiceOptions::default()).await;
    let port = down.port();
    down.kill();
    let mut inst = Inst::new("DISCOVERABLECLIENT", "dc-1", port);
    inst.routes
        .push(("ws__status", "ws/status", "/discoverableclient/ws"));
    inst.metadata = vec![(
        "apiml.routes.ws__status.handshakeFailure".into(),
        "status".into(),
    )];
    let mut starting = Inst::new("STARTING", "st-1", port);
    starting.status = "STARTING";
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[inst, starting]),
        "[handshake]\nfailure = \"close\"\nallowed_origins = [\"https://app.example.com\"]\n",
    )
    .await;
    for (path, origin, code, reason) in [
        ("/ws/v1/nosuchservice/x", None, 1008, "no WebSocket route"),
        ("/ws/v1/starting/x", None, 1013, "has no UP instance"),
        ("/ws/v1/discoverableclient/x", None, 1011, "cannot connect"),
        (
            "/ws/v1/discoverableclient/x",
            Some("https://evil.test"),
            1008,
            "is not allowed",
        ),
    ] {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("Origin", *o)).collect();
        let (mut ws, resp) = agent.connect(path, &headers).await.unwrap();
        assert_eq!(resp.status(), 101, "{path}");
        let (got, why) = read_close(&mut ws).await.unwrap();
        assert_eq!(got, code, "{path}: {why}");
        assert!(why.contains(reason), "{path}: {why}");
    }
    // The route that asks for an HTTP status gets one, and a request that is not an upgrade
    // can only get one.
    let (status, _) = refused(
        agent
            .connect("/ws/status/discoverableclient/x", &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 502);
    let (head, _, _) = agent.get("/ws/v1/nosuchservice/x", "").await;
    assert_eq!(head, 404);
    let (_, _, metrics) = agent.get("/application/prometheus", "").await;
    for line in [
        "wsrelay_handshake_failures_total{status=\"404\"} 2",
        "wsrelay_handshake_failures_total{status=\"503\"} 1",
        "wsrelay_handshake_failures_total{status=\"502\"} 2",
        "wsrelay_handshake_failures_total{status=\"403\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}
