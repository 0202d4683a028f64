//! Session limits: total and per client IP, answered with 503 and Retry-After.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;

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

/// Reads until the peer closes; returns the bytes read (a closed connection, not a timeout).
async fn read_until_closed(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(120), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the agent kept a stalled connection open"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn slowloris_and_silent_tls_clients_are_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[]),
        "[limits]\nhandshake_timeout = \"10s\"\n",
    )
    .await;
    // A TCP client that never starts TLS.
    let mut silent = tokio::net::TcpStream::connect(agent.agent.local_addr)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert!(read_until_closed(&mut silent).await.is_empty());
    assert!(started.elapsed() >= std::time::Duration::from_secs(10));

    // A TLS client that sends its request head one byte at a time, too slowly.
    let tcp = tokio::net::TcpStream::connect(agent.agent.local_addr)
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(agent.cert.client_config())
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let head = b"GET /ws/v1/discoverableclient/x HTTP/1.1\r\nHost: localhost\r\n";
    let mut sent = 0;
    for b in head {
        if tls.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if started.elapsed() > std::time::Duration::from_secs(30) {
            break;
        }
    }
    let _ = read_until_closed(&mut tls).await;
    assert!(sent < head.len(), "the whole slow head was accepted");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(10) && took < std::time::Duration::from_secs(30),
        "{took:?}"
    );
}

/// Issue 14 item 7: `limits.max_connections` is taken at accept, before any work. A connection
/// over it is not accepted (its TLS handshake gets no answer) until one closes; an upgraded
/// session holds its connection's permit for its whole life.
#[tokio::test]
async fn connections_over_max_connections_wait_until_one_closes() {
    let (_svc, agent) = TestAgent::with_echo_service("[limits]\nmax_connections = 2\n").await;
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap();
    let _idle = agent.tls_stream().await;
    let metrics = &agent.agent.shared.metrics.proxy;
    assert_eq!(metrics.connections_open.get(), 2);

    let addr = agent.agent.local_addr;
    let tls = tokio_rustls::TlsConnector::from(agent.cert.client_config());
    let third = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tls.connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served");
    assert!(metrics.connection_limit_reached.get() >= 1);

    // The session ends: its permit frees, the waiting connection is accepted.
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    agent.wait_sessions(0).await;
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the waiting connection was not accepted")
        .unwrap()
        .unwrap();
}
