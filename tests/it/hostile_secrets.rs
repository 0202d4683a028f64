//! No secret in logs, error answers, metrics or the diagnostics endpoints: a full session at
//! `TRACE` (wsrelay, hyper, rustls, tungstenite, reqwest all captured) with Eureka basic-auth
//! credentials, an admin token, TLS keys on both legs, and client `Authorization` / `Cookie`
//! headers, including failed handshakes; then every captured byte is searched for them.
//!
//! This test binary installs its own global subscriber, so it holds this one test only.

use crate::hostile::*;
use crate::support::eureka::{FakeEureka, TestInstance};
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const AUTHORIZATION: &str = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWp3dC1wYXlsb2Fk.sig-Zq8";
const COOKIE_VALUE: &str = "cookie-secret-4f1b2e9a";
const EUREKA_USER: &str = "eureka-user-7c1d";
const EUREKA_PASS: &str = "eureka-pass-93ab";
const ADMIN_TOKEN: &str = "admin-token-5e62b1";

/// The base64 body lines of a PEM private key (each is key material).
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_owned)
        .collect()
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_answers_metrics_or_diagnostics() {
    let logs = LogBuffer::global();

    // The agent (TestAgent trusts its own certificate as upstream.ca_file), a wss service
    // with the same certificate and key, and a service that refuses with 403; all found
    // through a Eureka server that needs basic auth credentials from the URL.
    let refusing = TestService::start(ServiceOptions {
        refuse_status: Some(403),
        ..Default::default()
    })
    .await;
    let eureka = FakeEureka::start().await;
    eureka.add(
        TestInstance::new("refusing", "127.0.0.1", refusing.port())
            .meta("apiml.routes.ws_v1.gatewayUrl", "/ws/v1/")
            .meta("apiml.routes.ws_v1.serviceUrl", "/r/ws"),
    );
    let with_creds = eureka.service_url().replacen(
        "http://",
        &format!("http://{EUREKA_USER}:{EUREKA_PASS}@"),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_with(
        &format!(
            "[registry]\neureka_urls = [{with_creds:?}]\nrefresh_interval = \"100ms\"\n[admin]\ntoken = {ADMIN_TOKEN:?}\n"
        ),
        "",
        dir,
    )
    .await;
    let svc = TestService::start(ServiceOptions {
        tls: Some(agent.cert.server_config()),
        choose_protocol: Some("chat".into()),
        ..Default::default()
    })
    .await;
    eureka.add(
        TestInstance::new("securesvc", "localhost", 0)
            .id("secure-1")
            .port_enabled(false)
            .secure(svc.port())
            .meta("apiml.routes.ws_v1.gatewayUrl", "/ws/v1/")
            .meta("apiml.routes.ws_v1.serviceUrl", "/secure/ws"),
    );
    // Wait until the route table has the new instance.
    let mut opened = None;
    for _ in 0..200 {
        if let Ok(c) = agent
            .connect(
                "/ws/v1/securesvc/x",
                &[
                    ("Authorization", AUTHORIZATION),
                    (
                        "Cookie",
                        &format!("apimlAuthenticationToken={COOKIE_VALUE}"),
                    ),
                    ("Sec-WebSocket-Protocol", "chat"),
                ],
            )
            .await
        {
            opened = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (mut ws, _) = opened.expect("session through the wss service");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    // The service got the credentials (so they really passed through the agent).
    let seen = svc.last_request();
    assert_eq!(seen.header("authorization"), Some(AUTHORIZATION));
    assert!(seen.header("cookie").unwrap().contains(COOKIE_VALUE));
    // Diagnostics while the session is open.
    let mut answers = String::new();
    for path in [
        "/application",
        "/application/websockets",
        "/application/info",
        "/application/routes",
        "/application/health",
        "/application/prometheus",
    ] {
        let (head, body) = exchange(
            &agent,
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nCookie: c={COOKIE_VALUE}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status(&head), 200, "{path}: {head}{body}");
        answers.push_str(&head);
        answers.push_str(&body);
    }
    ws.close(None).await.unwrap();
    agent.wait_sessions(0).await;

    // Failures with credentials: refused by the service (502), unknown route (404), admin
    // with a wrong token (401/403).
    for (path, want) in [("/ws/v1/refusing/x", 502), ("/ws/v1/nosuch/x", 404)] {
        let (head, body) = exchange(
            &agent,
            upgrade_request(
                path,
                &format!("Authorization: {AUTHORIZATION}\r\nCookie: a={COOKIE_VALUE}\r\n"),
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status(&head), want, "{path}: {head}{body}");
        answers.push_str(&head);
        answers.push_str(&body);
    }
    let (head, body) = exchange(
        &agent,
        format!(
            "GET /application/info HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer not-{ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(matches!(status(&head), 401 | 403), "{head}");
    answers.push_str(&head);
    answers.push_str(&body);
    // Eureka got the basic-auth credentials.
    let basic = format!("Basic {}", base64(&format!("{EUREKA_USER}:{EUREKA_PASS}")));
    assert!(
        eureka
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(basic.as_str())),
        "Eureka never saw the credentials"
    );
    let key_pem = agent.cert.key_pem.clone();
    drop(agent);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // The test's own peers (the WebSocket client and the test services) do their HTTP
    // handshakes with tungstenite, which traces whole requests; the agent never runs that code
    // (it uses hyper on both legs), so those lines are not the agent's and are left out.
    let captured: String = logs
        .text()
        .lines()
        .filter(|l| !l.contains(" tungstenite::handshake::"))
        .flat_map(|l| [l, "\n"])
        .collect();
    assert!(
        captured.contains("session opened") && captured.contains("TRACE"),
        "the capture missed the session"
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("Authorization value".into(), AUTHORIZATION.into()),
        ("JWT payload".into(), "c2VjcmV0LWp3dC1wYXlsb2Fk".into()),
        ("Cookie value".into(), COOKIE_VALUE.into()),
        ("Eureka user".into(), EUREKA_USER.into()),
        ("Eureka password".into(), EUREKA_PASS.into()),
        ("Eureka basic auth".into(), basic.clone()),
        ("admin token".into(), ADMIN_TOKEN.into()),
        ("private key marker".into(), "PRIVATE KEY".into()),
    ];
    for (i, l) in key_lines(&key_pem).into_iter().enumerate() {
        secrets.push((format!("TLS key line {i}"), l));
    }
    for (what, secret) in &secrets {
        for (place, text) in [("logs", &captured), ("answers", &answers)] {
            if let Some(at) = text.find(secret.as_str()) {
                let from = text[..at].rfind('\n').unwrap_or(0);
                panic!(
                    "{what} found in {place}: ...{}...",
                    &text[from..(at + secret.len() + 50).min(text.len())]
                );
            }
        }
    }
}
