//! End to end: registry → routes → TLS listener → WebSocket relay, on real loopback sockets
//! with real TLS and real WebSocket peers.

use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

async fn echo_roundtrip<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text(text));
}

#[tokio::test]
async fn both_url_forms_reach_the_service_with_path_and_query() {
    let (svc, agent) = TestAgent::with_echo_service("").await;

    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/echo/deep?x=1&y=%20", &[])
        .await
        .unwrap();
    echo_roundtrip(&mut ws, "hello v1").await;
    assert_eq!(
        svc.last_request().path_and_query,
        "/discoverableclient/ws/echo/deep?x=1&y=%20"
    );
    ws.close(None).await.unwrap();

    let (mut ws, _) = agent
        .connect("/DiscoverableClient/ws/v1/other", &[])
        .await
        .unwrap();
    echo_roundtrip(&mut ws, "hello current").await;
    assert_eq!(
        svc.last_request().path_and_query,
        "/discoverableclient/ws/other"
    );

    let (mut ws2, _) = agent
        .connect("/ws/v1/discoverableclient", &[])
        .await
        .unwrap();
    echo_roundtrip(&mut ws2, "no path").await;
    assert_eq!(svc.last_request().path_and_query, "/discoverableclient/ws");
    agent.wait_sessions(2).await;
    ws.close(None).await.unwrap();
    ws2.close(None).await.unwrap();
    agent.wait_sessions(0).await;
}

#[tokio::test]
async fn headers_auth_cookie_forwarded_and_subprotocol_negotiated() {
    let svc = TestService::start(ServiceOptions {
        choose_protocol: Some("v2.chat".into()),
        ..Default::default()
    })
    .await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        "",
    )
    .await;
    let (mut ws, resp) = agent
        .connect(
            "/ws/v1/discoverableclient/chat",
            &[
                ("Authorization", "Basic dXNlcjpwYXNz"),
                ("Cookie", "apimlAuthenticationToken=abc"),
                ("Sec-WebSocket-Protocol", "v1.chat, v2.chat"),
                // An extension wsrelay does not know: declined, and not passed on.
                ("Sec-WebSocket-Extensions", "x-webkit-deflate-frame"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v2.chat");
    echo_roundtrip(&mut ws, "with protocol").await;
    let seen = svc.last_request();
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwYXNz"));
    assert_eq!(seen.header("cookie"), Some("apimlAuthenticationToken=abc"));
    assert_eq!(
        seen.header("sec-websocket-protocol"),
        Some("v1.chat, v2.chat")
    );
    assert_eq!(seen.header("sec-websocket-extensions"), None);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    let port = agent.agent.local_addr.port().to_string();
    assert_eq!(seen.header("x-forwarded-port"), Some(port.as_str()));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(format!("localhost:{port}").as_str())
    );

    // /application/websockets shows the session with its fields.
    let sessions: serde_json::Value = agent.get_json("/application/websockets").await.1;
    let s = &sessions[0];
    assert_eq!(s["serviceId"], "DISCOVERABLECLIENT");
    assert_eq!(s["instanceId"], "dc-1");
    // The Zowe v2 forms: the whole request URI, and the client as Java writes an address.
    assert_eq!(
        s["gatewayPath"],
        format!("wss://localhost:{port}/ws/v1/discoverableclient/chat")
    );
    assert!(
        s["clientAddress"]
            .as_str()
            .unwrap()
            .starts_with("/127.0.0.1:"),
        "{s}"
    );
    // The service side: the service leg's own address (real_eureka checks it against what a
    // Spring service sees).
    let service_side = s["serviceSessionId"].as_str().unwrap();
    assert!(service_side.starts_with("/127.0.0.1:"), "{s}");
    assert_ne!(s["serviceSessionId"], s["clientAddress"]);
    assert_eq!(s["subprotocol"], "v2.chat");
    assert_eq!(s["messagesIn"], 1);
    assert_eq!(s["bytesOut"], "with protocol".len());
    assert_eq!(
        s["serviceUrl"],
        format!("ws://127.0.0.1:{}/discoverableclient/ws/chat", svc.port())
    );
    ws.close(None).await.unwrap();
    agent.wait_sessions(0).await;
}

/// Issue 16 item 1: the identity headers Zowe's x509 scheme trusts (set by the gateway from
/// a verified client certificate: `X509FilterFactory`, client copies removed by
/// `HeaderSanitizerFilter`) never reach the service as a client sent them, whatever their case;
/// other custom headers still pass.
#[tokio::test]
async fn client_sent_certificate_identity_headers_are_stripped() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        "",
    )
    .await;
    let (mut ws, _) = agent
        .connect(
            "/ws/v1/discoverableclient/id",
            &[
                ("X-Certificate-Public", "MIIBforged"),
                ("x-certificate-distinguishedname", "CN=admin,O=victim"),
                ("X-CERTIFICATE-COMMONNAME", "admin"),
                ("Client-Cert", ":MIIBforged:"),
                ("X-Custom", "kept"),
            ],
        )
        .await
        .unwrap();
    echo_roundtrip(&mut ws, "identity").await;
    let seen = svc.last_request();
    for name in [
        "x-certificate-public",
        "x-certificate-distinguishedname",
        "x-certificate-commonname",
        "client-cert",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the service");
    }
    assert_eq!(seen.header("x-custom"), Some("kept"));
    ws.close(None).await.unwrap();
    agent.wait_sessions(0).await;
}

#[tokio::test]
async fn wss_upstream_when_secure_port_is_enabled() {
    let svc_cert = TestCert::new();
    let svc = TestService::start(ServiceOptions {
        tls: Some(svc_cert.server_config()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    let mut inst = Inst::new("SECURESVC", "sec-1", svc.port());
    inst.secure = true;
    std::fs::write(&reg, registry_xml(&[inst])).unwrap();
    let cert = TestCert::new();
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n[registry]\nfile = {:?}\n[upstream]\nca_file = {:?}\n",
        cert.cert_path().display().to_string(),
        cert.key_path().display().to_string(),
        reg.display().to_string(),
        svc_cert.cert_path().display().to_string(),
    );
    let token = tokio_util::sync::CancellationToken::new();
    let running = wsrelay::start(
        wsrelay::config::Config::from_toml(&toml, None).unwrap(),
        token.clone(),
    )
    .await
    .unwrap();
    let url = format!(
        "wss://localhost:{}/ws/v1/securesvc/x",
        running.local_addr.port()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(cert.client_config())),
    )
    .await
    .unwrap();
    echo_roundtrip(&mut ws, "over wss both legs").await;
    assert_eq!(
        svc.last_request().path_and_query,
        "/discoverableclient/ws/x"
    );
    ws.close(None).await.unwrap();
    token.cancel();
}

#[tokio::test]
async fn failover_to_the_second_instance_when_the_first_refuses() {
    let svc = TestService::start(ServiceOptions::default()).await;
    // A port with nothing listening: bind, note the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[
            Inst::new("DISCOVERABLECLIENT", "dead", dead_port),
            Inst::new("DISCOVERABLECLIENT", "live", svc.port()),
        ]),
        "",
    )
    .await;
    // Round-robin starts on each instance in turn; every session must land on the live one.
    for i in 0..4 {
        let (mut ws, _) = agent
            .connect("/ws/v1/discoverableclient/x", &[])
            .await
            .unwrap();
        echo_roundtrip(&mut ws, &format!("attempt {i}")).await;
        let sessions = agent.get_json("/application/websockets").await.1;
        assert_eq!(sessions[0]["instanceId"], "live");
        ws.close(None).await.unwrap();
        agent.wait_sessions(0).await;
    }
    assert_eq!(svc.requests.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn http_failure_statuses() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let forbidden = TestService::start(ServiceOptions {
        refuse_status: Some(403),
        ..Default::default()
    })
    .await;
    let silent = TestService::start(ServiceOptions {
        silent: true,
        ..Default::default()
    })
    .await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut down = Inst::new("DOWNSVC", "down-1", svc.port());
    down.status = "DOWN";
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[
            Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port()),
            down,
            Inst::new("FORBIDDEN", "f-1", forbidden.port()),
            Inst::new("SILENT", "s-1", silent.port()),
            Inst::new("DEADSVC", "d-1", dead_port),
        ]),
        "",
    )
    .await;

    let (status, body) = refused(
        agent
            .connect("/ws/v1/nosuchservice/x", &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "Not Found");

    let (status, body) = refused(agent.connect("/ws/v1/downsvc/x", &[]).await.unwrap_err());
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("DOWNSVC"));

    let (status, body) = refused(agent.connect("/ws/v1/forbidden/x", &[]).await.unwrap_err());
    assert_eq!(status, 502);
    assert!(body["message"].as_str().unwrap().contains("403"), "{body}");

    let (status, body) = refused(agent.connect("/ws/v1/deadsvc/x", &[]).await.unwrap_err());
    assert_eq!(status, 502, "{body}");

    let (status, body) = refused(agent.connect("/ws/v1/silent/x", &[]).await.unwrap_err());
    assert_eq!(status, 504, "{body}");

    let (status, _) = refused(
        agent
            .connect("/ws/v1/discoverableclient/%2e%2e/admin", &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);

    // A malformed upgrade (no Sec-WebSocket-Key) gets 400; no Upgrade at all gets 426.
    let raw = agent.raw_request("GET /ws/v1/discoverableclient/x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("Sec-WebSocket-Key"), "{raw}");
    let raw = agent
        .raw_request("GET /ws/v1/discoverableclient/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(raw.starts_with("HTTP/1.1 426"), "{raw}");
    assert_eq!(agent.agent.live_sessions(), 0);
    assert_eq!(
        svc.requests.lock().unwrap().len(),
        0,
        "refused requests never reach the service"
    );
}

#[tokio::test]
async fn close_codes_pass_both_ways() {
    let (svc, agent) = TestAgent::with_echo_service("").await;

    // Client closes with 4001: the service sees 4001.
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap();
    echo_roundtrip(&mut ws, "a").await;
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4001),
        reason: "client done".into(),
    }))
    .await
    .unwrap();
    let answer = read_close(&mut ws).await;
    assert_eq!(answer.map(|a| a.0), Some(4001));
    agent.wait_sessions(0).await;
    assert_eq!(
        svc.closes.lock().unwrap().last().cloned().flatten(),
        Some((4001, "client done".to_string()))
    );

    // Service closes with 4002: the client sees 4002 and the reason.
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap();
    ws.send(Message::text("close:4002:service done"))
        .await
        .unwrap();
    assert_eq!(
        read_close(&mut ws).await,
        Some((4002, "service done".into()))
    );
    agent.wait_sessions(0).await;

    // The service dies without a close frame: the client gets 1011.
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap();
    echo_roundtrip(&mut ws, "b").await;
    svc.kill();
    let (code, _) = read_close(&mut ws).await.unwrap();
    assert_eq!(code, 1011);
    agent.wait_sessions(0).await;
}

#[tokio::test]
async fn oversized_message_closes_with_1009_and_sessions_return_to_zero() {
    let (svc, agent) =
        TestAgent::with_echo_service("[limits]\nmax_message_size = \"64KiB\"\n").await;
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap();
    ws.send(Message::binary(vec![7u8; 60 * 1024]))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.len(), 60 * 1024);
    ws.send(Message::binary(vec![7u8; 65 * 1024]))
        .await
        .unwrap();
    let (code, _) = read_close(&mut ws).await.unwrap();
    assert_eq!(code, 1009);
    agent.wait_sessions(0).await;
    assert_eq!(
        svc.closes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()
            .map(|c| c.0),
        Some(1009)
    );

    // Many sessions, ended every way: the live count returns to 0.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(
            agent
                .connect("/ws/v1/discoverableclient/x", &[])
                .await
                .unwrap()
                .0,
        );
    }
    agent.wait_sessions(20).await;
    for (i, mut ws) in clients.into_iter().enumerate() {
        match i % 3 {
            0 => ws.close(None).await.unwrap(),
            1 => ws.send(Message::text("close:1000:bye")).await.unwrap(),
            _ => drop(ws),
        }
    }
    agent.wait_sessions(0).await;
}

#[tokio::test]
async fn health_and_routes_endpoints() {
    let (svc, agent) = TestAgent::with_echo_service("").await;
    let (status, health) = agent.get_json("/application/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "UP");
    let (_, routes) = agent.get_json("/application/routes").await;
    assert_eq!(routes[0]["serviceId"], "DISCOVERABLECLIENT");
    assert_eq!(routes[0]["routes"][0]["gatewayUrl"], "ws/v1");
    assert_eq!(routes[0]["instances"][0]["port"], svc.port());
}

#[tokio::test]
async fn registry_from_a_test_eureka_server_in_json_and_xml() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let eureka = crate::support::eureka::FakeEureka::start().await;
    eureka.add(
        crate::support::eureka::TestInstance::new("discoverableclient", "127.0.0.1", svc.port())
            .meta("apiml.routes.ws_v1.gatewayUrl", "/ws/v1/")
            .meta("apiml.routes.ws_v1.serviceUrl", "/discoverableclient/ws"),
    );
    for format in ["json", "xml"] {
        let dir = tempfile::tempdir().unwrap();
        let agent = TestAgent::start_with(
            &format!(
                "[registry]\neureka_urls = [{:?}]\nformat = {format:?}\n",
                eureka.service_url()
            ),
            "",
            dir,
        )
        .await;
        let (mut ws, _) = agent
            .connect("/ws/v1/discoverableclient/e", &[])
            .await
            .unwrap();
        echo_roundtrip(&mut ws, format).await;
        ws.close(None).await.unwrap();
        let accept = eureka
            .requests()
            .last()
            .map(|r| r.accept.clone())
            .unwrap_or_default();
        assert!(
            accept.unwrap_or_default().contains(format),
            "Accept for {format}"
        );
    }
}

/// The captured Zowe registry (Eureka codec output), served by the test Eureka server as it was
/// captured, in JSON and XML: `check` decodes both to the same registry.
#[tokio::test]
async fn captured_zowe_registry_served_over_eureka_http() {
    let eureka = crate::support::eureka::FakeEureka::start().await;
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/eureka/zowe-api-layer/wire-contract/"
    );
    let mut outputs = Vec::new();
    for (file, format, ct) in [
        ("applications-registry.json", "json", "application/json"),
        ("applications-registry.xml", "xml", "application/xml"),
    ] {
        eureka.set_mode(crate::support::eureka::Mode::Canned {
            status: 200,
            content_type: ct.into(),
            body: std::fs::read(format!("{fixtures}{file}")).unwrap(),
        });
        let toml = format!(
            "[tls]\nenabled = false\n[registry]\neureka_urls = [{:?}]\nformat = {format:?}\n",
            eureka.service_url()
        );
        let config = wsrelay::config::Config::from_toml(&toml, None).unwrap();
        let out = wsrelay::check(&config).await.unwrap();
        // 2 applications, 3 instances; their routes are api/v1 (HTTP), so no WebSocket route.
        assert!(
            out.contains("2 applications, 3 instances; 0 with WebSocket routes"),
            "{out}"
        );
        outputs.push(out.lines().skip(1).collect::<Vec<_>>().join("\n"));
    }
    assert_eq!(outputs[0], outputs[1]);
}
