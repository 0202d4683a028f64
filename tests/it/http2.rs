//! WebSockets over HTTP/2 (RFC 8441) on the listener (issue 17 part 2), with hyper's HTTP/2
//! client as an independent peer: ALPN `h2`, `SETTINGS_ENABLE_CONNECT_PROTOCOL`, several
//! sessions and admin requests on one TCP connection, a stream reset that ends only its own
//! session, and the stream-level refusals.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::TestAgent;

/// A TLS connection to `agent` offering the ALPN ids `alpn`.
async fn tls_with_alpn(
    agent: &TestAgent,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut cfg = (*agent.cert.client_config()).clone();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(agent.agent.local_addr)
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// An HTTP/2 connection to `agent` (ALPN `h2` only), driven in a task.
async fn h2_connect(agent: &TestAgent) -> SendRequest<Empty<Bytes>> {
    let tls = tls_with_alpn(agent, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn connect_request(
    agent: &TestAgent,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Empty<Bytes>> {
    let mut b = Request::builder()
        .method(Method::CONNECT)
        .uri(format!(
            "https://localhost:{}{path}",
            agent.agent.local_addr.port()
        ))
        .extension(hyper::ext::Protocol::from_static("websocket"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

/// Opens a WebSocket as an extended CONNECT stream (RFC 8441 §4, §5).
async fn open_ws(
    send: &mut SendRequest<Empty<Bytes>>,
    agent: &TestAgent,
    path: &str,
) -> (
    WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    http::HeaderMap,
) {
    send.ready().await.unwrap();
    let resp = send
        .send_request(connect_request(
            agent,
            path,
            &[
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "chat, other"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{resp:?}");
    let headers = resp.headers().clone();
    let up = hyper::upgrade::on(resp).await.unwrap();
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Client, None).await;
    (ws, headers)
}

async fn get(
    send: &mut SendRequest<Empty<Bytes>>,
    agent: &TestAgent,
    path: &str,
) -> (StatusCode, String) {
    send.ready().await.unwrap();
    let req = Request::builder()
        .uri(format!(
            "https://localhost:{}{path}",
            agent.agent.local_addr.port()
        ))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_ride_one_http2_connection_and_a_reset_ends_only_its_own_session() {
    let (svc, agent) = TestAgent::with_echo_service("").await;
    let mut send = h2_connect(&agent).await;
    // An admin request first: it also brings the server's SETTINGS, which must allow
    // extended CONNECT before a client may send one (RFC 8441 §3).
    let (status, body) = get(&mut send, &agent, "/application/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("UP"), "{body}");

    let path = "/ws/v1/discoverableclient/echo?x=1";
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(open_ws(&mut send, &agent, path).await);
    }
    // No Sec-WebSocket-Accept or Upgrade over HTTP/2; the subprotocol as over HTTP/1.1.
    let (_, h) = &sessions[0];
    assert!(h.get("sec-websocket-accept").is_none() && h.get("upgrade").is_none());
    let mut sessions: Vec<_> = sessions.into_iter().map(|(ws, _)| ws).collect();
    for (i, ws) in sessions.iter_mut().enumerate() {
        let text = format!("hello {i} over h2");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    // A large message crosses the streams' flow control both ways.
    let big = vec![7u8; 3 << 20];
    sessions[1]
        .send(Message::binary(big.clone()))
        .await
        .unwrap();
    assert_eq!(
        sessions[1].next().await.unwrap().unwrap(),
        Message::binary(big)
    );
    agent.wait_sessions(3).await;
    // The service saw an HTTP/1.1 upgrade with Host from :authority.
    let seen = svc.last_request();
    assert_eq!(
        seen.header("host").map(|h| h.starts_with("127.0.0.1:")),
        Some(true)
    );
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(format!("localhost:{}", agent.agent.local_addr.port()).as_str())
    );
    let (_, metrics) = get(&mut send, &agent, "/application/prometheus").await;
    assert!(
        metrics.contains("wsrelay_http2_sessions_total 3"),
        "{metrics}"
    );
    let (_, listing) = get(&mut send, &agent, "/application/websockets").await;
    assert!(listing.contains("wss://localhost:"), "{listing}");

    // Dropping a stream's upgraded I/O resets that stream: its session ends (the service gets
    // 1001 as for a lost client), the others go on.
    let dropped = sessions.remove(0);
    drop(dropped);
    agent.wait_sessions(2).await;
    for ws in sessions.iter_mut() {
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text("still here")
        );
    }
    for mut ws in sessions {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    agent.wait_sessions(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_refusals_are_stream_statuses_and_the_connection_stays_usable() {
    let (_svc, agent) = TestAgent::with_echo_service("").await;
    let mut send = h2_connect(&agent).await;
    let _ = get(&mut send, &agent, "/application/health").await;
    // A plain GET to a WebSocket route over h2: 400 (no 426 in HTTP/2).
    let (status, body) = get(&mut send, &agent, "/ws/v1/discoverableclient/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("extended CONNECT"), "{body}");
    // No version, an unknown route, a missing service: 400, 404, 404.
    for (path, headers, want) in [
        (
            "/ws/v1/discoverableclient/x",
            &[][..],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/nothing/here",
            &[("sec-websocket-version", "13")][..],
            StatusCode::NOT_FOUND,
        ),
        (
            "/ws/v1/nosuchservice/x",
            &[("sec-websocket-version", "13")][..],
            StatusCode::NOT_FOUND,
        ),
    ] {
        send.ready().await.unwrap();
        let resp = send
            .send_request(connect_request(&agent, path, headers))
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{path}");
    }
    // The connection still carries a session.
    let (mut ws, _) = open_ws(&mut send, &agent, "/ws/v1/discoverableclient/x").await;
    ws.send(Message::text("ok")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ok"));
    drop(ws);
    tokio::time::timeout(Duration::from_secs(10), agent.wait_sessions(0))
        .await
        .unwrap();
}

/// With `tls.http2 = false` the listener offers only `http/1.1`.
#[tokio::test]
async fn http2_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    std::fs::write(&reg, crate::support::registry_xml(&[])).unwrap();
    let agent = TestAgent::start_with_tls(
        "http2 = false\n",
        &format!("[registry]\nfile = {:?}\n", reg.display().to_string()),
        "",
        dir,
    )
    .await;
    let tls = tls_with_alpn(&agent, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(b"http/1.1".as_slice())
    );
}
