//! Session failover (issue 6) through a real agent: real TLS client leg, real test services on
//! 127.0.0.1, instances killed under an open session.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message (pings and pongs skipped), within 5 s.
async fn next_text(ws: &mut Client) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no message within 5 s")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The one live session as `/application/websockets` shows it.
async fn session(agent: &TestAgent) -> serde_json::Value {
    let (status, v) = agent.get_json("/application/websockets").await;
    assert_eq!(status, 200);
    let list = v.as_array().expect("a JSON array").clone();
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

/// Waits (up to 10 s) until the session has read `n` client messages.
async fn wait_messages_in(agent: &TestAgent, n: u64) {
    for _ in 0..1000 {
        if session(agent).await["messagesIn"].as_u64() == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("messagesIn never reached {n}: {}", session(agent).await);
}

/// Opens a session on `path` (with `headers`) and checks that it echoes.
async fn open_echoing(agent: &TestAgent, path: &str) -> Client {
    let (mut ws, _) = agent.connect(path, &[]).await.unwrap();
    ws.send(Message::text("0")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "0");
    ws
}

fn two_instances(p1: u16, p2: u16, route_failover: Option<&str>) -> String {
    let mut a = Inst::new("DISCOVERABLECLIENT", "dc-1", p1);
    let mut b = Inst::new("DISCOVERABLECLIENT", "dc-2", p2);
    if let Some(mode) = route_failover {
        for i in [&mut a, &mut b] {
            i.metadata
                .push(("apiml.routes.ws__v1.failover".into(), mode.into()));
        }
    }
    registry_xml(&[a, b])
}

#[tokio::test]
async fn a_killed_instance_hands_the_session_to_the_next_one_with_buffered_messages_in_order() {
    let first = TestService::start(ServiceOptions::default()).await;
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    let second = TestService::start(ServiceOptions {
        accepted: Some(accepted_tx),
        hold: Some(Arc::clone(&hold)),
        ..Default::default()
    })
    .await;
    // Failover is chosen by the route's metadata; the agent's default stays "close".
    let agent = TestAgent::with_registry_file(
        &two_instances(first.port(), second.port(), Some("reconnect")),
        "",
    )
    .await;
    let mut ws = open_echoing(&agent, "/ws/v1/discoverableclient/chat?room=1").await;
    let s = session(&agent).await;
    assert_eq!(
        (s["instanceId"].as_str(), s["failovers"].as_u64()),
        (Some("dc-1"), Some(0))
    );

    // Hard kill: the first instance drops its connections without a close frame.
    first.kill();
    // The agent is now connecting to the second instance, whose handshake is held: every
    // message sent meanwhile waits in the failover buffer.
    tokio::time::timeout(Duration::from_secs(5), accepted.recv())
        .await
        .expect("the agent did not reconnect")
        .unwrap();
    for i in 1..=20 {
        ws.send(Message::text(i.to_string())).await.unwrap();
    }
    wait_messages_in(&agent, 21).await;
    hold.add_permits(1);

    // They reach the second instance first, in order, and its echoes come back.
    for i in 1..=20 {
        assert_eq!(next_text(&mut ws).await, i.to_string());
    }
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "after");
    let expected: Vec<String> = (1..=20)
        .map(|i| i.to_string())
        .chain(["after".to_string()])
        .collect();
    assert_eq!(*second.received.lock().unwrap(), expected);
    // Same path and query on the new instance.
    assert_eq!(
        second.last_request().path_and_query,
        "/discoverableclient/ws/chat?room=1"
    );

    let s = session(&agent).await;
    assert_eq!(s["instanceId"], "dc-2");
    assert_eq!(s["failovers"], 1);
    assert_eq!(
        s["serviceUrl"],
        format!(
            "ws://127.0.0.1:{}/discoverableclient/ws/chat?room=1",
            second.port()
        )
    );
    let (_, _, metrics) = agent.get("/application/prometheus", "").await;
    assert!(
        metrics.contains(
            "wsrelay_session_failovers_total{service=\"DISCOVERABLECLIENT\",result=\"switched\"} 1"
        ),
        "{metrics}"
    );
    ws.close(None).await.unwrap();
    agent.wait_sessions(0).await;
}

#[tokio::test]
async fn a_1001_close_from_the_instance_moves_the_session_and_keeps_the_subprotocol() {
    let opts = ServiceOptions {
        choose_protocol: Some("v2.chat".into()),
        ..Default::default()
    };
    let first = TestService::start(opts.clone()).await;
    let second = TestService::start(opts).await;
    // Failover on for every route (the agent's default).
    let agent = TestAgent::with_registry_file(
        &two_instances(first.port(), second.port(), None),
        "[failover]\nmode = \"reconnect\"\n",
    )
    .await;
    let (mut ws, resp) = agent
        .connect(
            "/discoverableclient/ws/v1/chat",
            &[("Sec-WebSocket-Protocol", "v1.chat, v2.chat")],
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v2.chat");
    // The first instance goes away politely (1001 Going Away, as on a restart).
    ws.send(Message::text("close:1001:restarting"))
        .await
        .unwrap();
    let mut moved = false;
    for _ in 0..500 {
        if session(&agent).await["failovers"] == 1 {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(moved, "{}", session(&agent).await);
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "still here");
    assert_eq!(session(&agent).await["instanceId"], "dc-2");
    // Only the negotiated subprotocol is offered to the new instance.
    assert_eq!(
        second.last_request().header("sec-websocket-protocol"),
        Some("v2.chat")
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn without_failover_a_killed_instance_closes_the_client_with_1011() {
    let first = TestService::start(ServiceOptions::default()).await;
    let second = TestService::start(ServiceOptions::default()).await;
    // Route metadata "close" wins over the agent's "reconnect".
    let agent = TestAgent::with_registry_file(
        &two_instances(first.port(), second.port(), Some("close")),
        "[failover]\nmode = \"reconnect\"\n",
    )
    .await;
    let mut ws = open_echoing(&agent, "/ws/v1/discoverableclient/x").await;
    first.kill();
    assert_eq!(
        read_close(&mut ws).await,
        Some((1011, "service connection lost".into()))
    );
    assert!(second.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn no_instance_left_closes_the_client_with_1013() {
    let only = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", only.port())]),
        "[failover]\nmode = \"reconnect\"\n",
    )
    .await;
    let mut ws = open_echoing(&agent, "/ws/v1/discoverableclient/x").await;
    only.kill();
    let (code, reason) = read_close(&mut ws).await.unwrap();
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("no other live instance"), "{reason}");
    agent.wait_sessions(0).await;
    let (_, _, metrics) = agent.get("/application/prometheus", "").await;
    assert!(
        metrics.contains(
            "wsrelay_session_failovers_total{service=\"DISCOVERABLECLIENT\",result=\"failed\"} 1"
        ),
        "{metrics}"
    );
}

/// Sticky sessions and failover (issue 16 item 3): a session that fails over re-sticks its
/// key to the instance it moved to, so the key's next sessions go there too, where the round
/// robin (first trying the dead instance, still UP in the registry) would spread them.
#[tokio::test]
async fn a_failover_re_sticks_the_key_to_the_instance_the_session_moved_to() {
    let services = [
        TestService::start(ServiceOptions::default()).await,
        TestService::start(ServiceOptions::default()).await,
        TestService::start(ServiceOptions::default()).await,
    ];
    let registry = registry_xml(&[
        Inst::new("DISCOVERABLECLIENT", "dc-1", services[0].port()),
        Inst::new("DISCOVERABLECLIENT", "dc-2", services[1].port()),
        Inst::new("DISCOVERABLECLIENT", "dc-3", services[2].port()),
    ]);
    let agent = TestAgent::with_registry_file(
        &registry,
        "[failover]\nmode = \"reconnect\"\n[routing]\nsticky = \"header:X-User\"\n",
    )
    .await;
    let alice = [("X-User", "alice")];
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &alice)
        .await
        .unwrap();
    ws.send(Message::text("0")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "0");
    let first = session(&agent).await["instanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let index = |id: &str| id.trim_start_matches("dc-").parse::<usize>().unwrap() - 1;
    services[index(&first)].kill();
    let mut moved = None;
    for _ in 0..500 {
        let s = session(&agent).await;
        if s["failovers"] == 1 {
            moved = Some(s["instanceId"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let moved = moved.expect("the session did not fail over");
    assert_ne!(moved, first);
    ws.send(Message::text("1")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "1");
    // Alice's next sessions go where her session moved, every time.
    for n in 0..6 {
        let (mut other, _) = agent
            .connect("/ws/v1/discoverableclient/y", &alice)
            .await
            .unwrap();
        other.send(Message::text("hi")).await.unwrap();
        assert_eq!(next_text(&mut other).await, "hi");
        let (_, list) = agent.get_json("/application/websockets").await;
        let on = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["gatewayPath"].as_str().unwrap().ends_with("/y"))
            .map(|s| s["instanceId"].as_str().unwrap().to_owned());
        assert_eq!(on.as_deref(), Some(moved.as_str()), "session {n}");
        other.close(None).await.unwrap();
        let _ = other.next().await;
        agent.wait_sessions(1).await;
    }
}
