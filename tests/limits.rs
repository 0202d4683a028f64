//! Session limits: total and per client IP, answered with 503 and Retry-After.

mod support;

use support::*;

/// Connects from a chosen loopback source address.
async fn connect_from(
    agent: &TestAgent,
    source: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(agent.agent.local_addr).await.unwrap();
    tokio_tungstenite::client_async_tls_with_config(
        agent.url("/ws/v1/discoverableclient/x"),
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(
            agent.cert.client_config(),
        )),
    )
    .await
    .map(|(ws, _)| ws)
}

#[tokio::test]
async fn max_sessions_and_max_sessions_per_ip_answer_503_with_retry_after() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        "[limits]\nmax_sessions = 3\nmax_sessions_per_ip = 2\n",
    )
    .await;
    let mut a1 = connect_from(&agent, "127.0.0.1").await.unwrap();
    let _a2 = connect_from(&agent, "127.0.0.1").await.unwrap();
    // Per IP: a third from 127.0.0.1 is refused ...
    let e = connect_from(&agent, "127.0.0.1").await.unwrap_err();
    let retry = match &e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.headers().get("retry-after").cloned(),
        _ => None,
    };
    let (status, body) = refused(e);
    assert_eq!(status, 503);
    assert!(
        body["message"].as_str().unwrap().contains("client address"),
        "{body}"
    );
    assert_eq!(retry.unwrap(), "5");
    // ... but another address still gets in, up to the total.
    let _b1 = connect_from(&agent, "127.0.0.2").await.unwrap();
    let (status, body) = refused(connect_from(&agent, "127.0.0.3").await.unwrap_err());
    assert_eq!(status, 503);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limit of 3 sessions"),
        "{body}"
    );
    assert_eq!(
        svc.requests.lock().unwrap().len(),
        3,
        "refused upgrades never reach the service"
    );
    // A slot frees when a session ends.
    a1.close(None).await.unwrap();
    read_close(&mut a1).await;
    agent.wait_sessions(2).await;
    let _a3 = connect_from(&agent, "127.0.0.1").await.unwrap();
}
