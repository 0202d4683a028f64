//! Services that misbehave at the upgrade (RFC 6455 §4.1 client rules): the client gets 502
//! or 504 with a JSON body, never a 101, and the agent logs one clear line naming the service.

use crate::hostile::*;
use crate::support::*;

/// Upgrade through the agent to `service` and return (status, JSON body).
async fn upgrade(agent: &TestAgent, service: &str) -> (u16, serde_json::Value) {
    let (head, body) = exchange(
        agent,
        upgrade_request(
            &format!("/ws/v1/{service}/x"),
            "Sec-WebSocket-Protocol: chat\r\n",
        )
        .as_bytes(),
    )
    .await;
    (
        status(&head),
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Waits (bounded) until the captured logs contain a line with every one of `parts`.
async fn logged(logs: &LogBuffer, parts: &[&str]) -> String {
    for _ in 0..200 {
        if let Some(line) = logs
            .text()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no log line with {parts:?} in:\n{}", logs.text());
}

#[tokio::test]
async fn misbehaving_services_get_502_or_504_and_a_clear_log_line() {
    let logs = LogBuffer::global();
    let wrong_accept = RawService::start(Answer::Bytes(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            .to_vec(),
    ))
    .await;
    let no_accept = RawService::start(Answer::Bytes(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            .to_vec(),
    ))
    .await;
    let unoffered = RawService::start(Answer::Upgrade(
        "Sec-WebSocket-Protocol: superchat\r\n".into(),
    ))
    .await;
    let two_protocols = RawService::start(Answer::Upgrade(
        "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n".into(),
    ))
    .await;
    let extension = RawService::start(Answer::Upgrade(
        "Sec-WebSocket-Extensions: permessage-deflate\r\n".into(),
    ))
    .await;
    let garbage =
        RawService::start(Answer::Bytes(b"\x16\x03\x01\x00\x05hello\r\n\r\n".to_vec())).await;
    let http_200 = RawService::start(Answer::Bytes(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
    ))
    .await;
    let silent = RawService::start(Answer::Silent).await;
    let cases = [
        (
            "WRONGACCEPT",
            wrong_accept.port,
            502,
            "wrong Sec-WebSocket-Accept",
        ),
        (
            "NOACCEPT",
            no_accept.port,
            502,
            "wrong Sec-WebSocket-Accept",
        ),
        (
            "UNOFFERED",
            unoffered.port,
            502,
            "which the client did not offer",
        ),
        (
            "TWOPROTOCOLS",
            two_protocols.port,
            502,
            "more than one Sec-WebSocket-Protocol",
        ),
        ("EXTENSION", extension.port, 502, "selected extension"),
        ("GARBAGE", garbage.port, 502, "HTTP"),
        (
            "HTTP200",
            http_200.port,
            502,
            "answered the upgrade with HTTP 200",
        ),
        (
            "SILENT",
            silent.port,
            504,
            "did not answer the upgrade within",
        ),
    ];
    let insts: Vec<Inst> = cases
        .iter()
        .map(|(app, port, _, _)| {
            let mut i = Inst::new(app, &format!("{}-1", app.to_ascii_lowercase()), *port);
            i.routes = vec![("ws", "ws/v1", "/svc")];
            i
        })
        .collect();
    let agent = TestAgent::with_registry_file(&registry_xml(&insts), "").await;
    for (app, port, want, cause) in cases {
        let (status, body) = upgrade(&agent, &app.to_ascii_lowercase()).await;
        assert_eq!(status, want, "{app}: {body}");
        assert_eq!(body["status"], want, "{app}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(cause), "{app}: {message}");
        // One WARN line, the handshake's, names the service URL and the cause (the only
        // instance's failed attempt adds no "trying the next instance" line).
        let line = logged(
            &logs,
            &["handshake failed", &format!("127.0.0.1:{port}"), cause],
        )
        .await;
        assert!(line.contains("WARN"), "{app}: {line}");
        assert!(
            !logs.text().contains("trying the next instance"),
            "{app}: {}",
            logs.text()
        );
    }
    assert_eq!(agent.agent.live_sessions(), 0);
}

#[tokio::test]
async fn a_service_that_closes_right_after_its_101_ends_the_session_with_1011() {
    let svc = RawService::start(Answer::Upgrade(String::new())).await;
    let mut svc = svc;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("SHORTLIVED", "s-1", svc.port)]),
        "",
    )
    .await;
    let mut client = raw_session(&agent, "/ws/v1/shortlived/x").await;
    let (_, service) = svc.accept().await;
    drop(service);
    let (seen, close) = client.until_close().await;
    assert!(seen.is_empty());
    let close = close.expect("a close frame");
    assert_eq!(close.close_code(), Some(1011));
    client.send(&client_frame(0x88, &close.payload)).await;
    assert!(client.next().await.is_none());
    agent.wait_sessions(0).await;
}
