//! Hostile clients at the opening handshake (RFC 6455 §4.2.1, RFC 9112), over real TLS
//! sockets with hand-written bytes: every malformed upgrade gets one honest 4xx answer and
//! never reaches the service; bytes a client sends right after its upgrade request (or
//! before the 101) reach the service.

use crate::hostile::*;
use crate::support::*;
use tokio::io::AsyncWriteExt;

const PATH: &str = "/ws/v1/discoverableclient/x";

async fn setup() -> (TestService, TestAgent) {
    let svc = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        "",
    )
    .await;
    (svc, agent)
}

fn request(lines: &[&str]) -> String {
    let mut r = format!("GET {PATH} HTTP/1.1\r\n");
    for l in lines {
        r.push_str(l);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

const HOST: &str = "Host: localhost";
const UPGRADE: &str = "Upgrade: websocket";
const CONNECTION: &str = "Connection: Upgrade";
const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
const VERSION: &str = "Sec-WebSocket-Version: 13";

#[tokio::test]
async fn missing_or_wrong_key_and_version_are_400_and_426() {
    let (svc, agent) = setup().await;
    for (lines, want) in [
        (vec![HOST, UPGRADE, CONNECTION, VERSION], 400),
        (
            vec![
                HOST,
                UPGRADE,
                CONNECTION,
                VERSION,
                "Sec-WebSocket-Key: short",
            ],
            400,
        ),
        (vec![HOST, UPGRADE, CONNECTION, VERSION, KEY, KEY], 400),
        (vec![HOST, UPGRADE, CONNECTION, KEY], 426),
        (
            vec![HOST, UPGRADE, CONNECTION, KEY, "Sec-WebSocket-Version: 8"],
            426,
        ),
        (
            vec![HOST, UPGRADE, CONNECTION, KEY, "Sec-WebSocket-Version: 13x"],
            426,
        ),
        (vec![HOST, CONNECTION, KEY, VERSION], 426),
        (vec![HOST, UPGRADE, KEY, VERSION], 400),
    ] {
        let (head, body) = exchange(&agent, request(&lines).as_bytes()).await;
        assert_eq!(status(&head), want, "{lines:?}\n{head}{body}");
        if want == 426 {
            // RFC 6455 §4.4: tell the client which version is supported.
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-version: 13\r\n"),
                "{head}"
            );
        }
        assert!(body.contains("\"status\""), "JSON body: {body}");
    }
    assert_eq!(svc.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn http_1_0_no_host_two_hosts_and_a_body_are_400() {
    let (svc, agent) = setup().await;
    let http10 = format!(
        "GET {PATH} HTTP/1.0\r\n{HOST}\r\n{UPGRADE}\r\n{CONNECTION}\r\n{KEY}\r\n{VERSION}\r\n\r\n"
    );
    let (head, body) = exchange(&agent, http10.as_bytes()).await;
    assert_eq!(status(&head), 400, "{head}{body}");
    assert!(body.contains("HTTP/1.1"), "{body}");

    let cases = [
        (
            request(&[UPGRADE, CONNECTION, KEY, VERSION]),
            "missing Host",
        ),
        (
            request(&[HOST, "Host: evil.example", UPGRADE, CONNECTION, KEY, VERSION]),
            "more than one Host",
        ),
        (
            format!(
                "GET {PATH} HTTP/1.1\r\n{HOST}\r\n{UPGRADE}\r\n{CONNECTION}\r\n{KEY}\r\n{VERSION}\r\nContent-Length: 6\r\n\r\nabcdef"
            ),
            "body",
        ),
    ];
    for (req, why) in cases {
        let (head, body) = exchange(&agent, req.as_bytes()).await;
        assert_eq!(status(&head), 400, "{why}: {head}{body}");
        assert!(body.contains(why), "{why}: {body}");
    }
    assert_eq!(svc.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn oversized_head_is_431() {
    let (svc, agent) = setup().await;
    let big = format!("X-Big: {}", "a".repeat(20 * 1024));
    let (head, _) = exchange(
        &agent,
        request(&[HOST, UPGRADE, CONNECTION, KEY, VERSION, &big]).as_bytes(),
    )
    .await;
    assert_eq!(status(&head), 431, "{head}");
    assert_eq!(svc.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_paths_are_refused_before_any_connect() {
    let (svc, agent) = setup().await;
    for path in [
        "/ws/v1/discoverableclient/%2e%2e/admin",
        "/ws/v1/discoverableclient/.%2E/admin",
        "/ws/v1/discoverableclient/a%2fb",
        "/ws/v1/discoverableclient/a%5Cb",
        "/ws/v1/discoverableclient/..;/admin",
        "/ws/v1/discoverableclient/%252e%252e/admin",
        "/ws/v1/discoverableclient/%c0%ae%c0%ae/admin",
        "/ws/v1/discoverableclient/%ff%fe",
        "/ws/v1/discoverableclient/a%00b",
    ] {
        let (head, body) = exchange(&agent, upgrade_request(path, "").as_bytes()).await;
        assert_eq!(status(&head), 400, "{path}: {head}{body}");
    }
    // Raw bytes that are not ASCII (invalid UTF-8, too) in the request target: refused by the
    // HTTP parser with 400, or the connection is closed without an answer; never relayed.
    let mut raw = b"GET /ws/v1/discoverableclient/\xff\xfe HTTP/1.1\r\n".to_vec();
    raw.extend_from_slice(
        format!("{HOST}\r\n{UPGRADE}\r\n{CONNECTION}\r\n{KEY}\r\n{VERSION}\r\n\r\n").as_bytes(),
    );
    let (head, _) = exchange(&agent, &raw).await;
    assert!(head.is_empty() || status(&head) == 400, "{head}");
    assert_eq!(svc.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn cr_or_lf_inside_a_header_value_is_refused_and_never_forwarded() {
    let (svc, agent) = setup().await;
    for bad in [
        "X-Evil: a\rInjected: 1",
        "X-Evil: a\r\n Injected: folded",
        "X-Evil: a\0b",
    ] {
        let (head, _) = exchange(
            &agent,
            request(&[HOST, UPGRADE, CONNECTION, KEY, VERSION, bad]).as_bytes(),
        )
        .await;
        assert!(head.is_empty() || status(&head) == 400, "{bad:?}: {head}");
    }
    assert_eq!(svc.requests.lock().unwrap().len(), 0);

    // A bare LF ends a header line (RFC 9112 §2.2 allows it): the client sent two headers of
    // its own; both arrive as separate, well-formed headers and nothing else is injected.
    let (head, _) = exchange(
        &agent,
        request(&[
            HOST,
            UPGRADE,
            CONNECTION,
            KEY,
            VERSION,
            "X-One: a\nX-Two: b",
        ])
        .as_bytes(),
    )
    .await;
    if status(&head) == 101 {
        let seen = svc.last_request();
        assert_eq!(seen.header("x-one"), Some("a"));
        assert_eq!(seen.header("x-two"), Some("b"));
        for (k, v) in &seen.headers {
            assert!(
                !k.contains(['\r', '\n']) && !v.contains(['\r', '\n']),
                "{k}: {v:?}"
            );
        }
    } else {
        assert_eq!(status(&head), 400, "{head}");
    }
}

#[tokio::test]
async fn frames_pipelined_after_the_upgrade_request_reach_the_service() {
    let (svc, agent) = setup().await;
    let mut s = tls_connect(&agent).await;
    // Request and two frames in one write, before the 101 could have been sent.
    let mut bytes = upgrade_request(PATH, "").into_bytes();
    bytes.extend(client_frame(0x81, b"early one"));
    bytes.extend(client_frame(0x82, &[1, 2, 3]));
    s.write_all(&bytes).await.unwrap();
    let (head, rest) = read_head(&mut s).await;
    assert_eq!(status(&head), 101, "{head}");
    let mut r = FrameReader::new(s, rest);
    let f = r.next().await.expect("echo of the first frame");
    assert_eq!((f.first, f.payload.as_slice()), (0x81, &b"early one"[..]));
    assert!(!f.masked);
    let f = r.next().await.expect("echo of the second frame");
    assert_eq!((f.first, f.payload.as_slice()), (0x82, &[1u8, 2, 3][..]));
    r.send(&client_frame(0x88, &close_payload(1000, b""))).await;
    let (_, close) = r.until_close().await;
    assert_eq!(close.and_then(|c| c.close_code()), Some(1000));
    agent.wait_sessions(0).await;
    assert_eq!(svc.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn frames_sent_before_a_refused_upgrade_go_nowhere() {
    let (svc, agent) = setup().await;
    let mut s = tls_connect(&agent).await;
    let mut bytes = upgrade_request("/ws/v1/nosuchservice/x", "").into_bytes();
    bytes.extend(client_frame(0x81, b"never relayed"));
    s.write_all(&bytes).await.unwrap();
    let (head, _) = read_head(&mut s).await;
    assert_eq!(status(&head), 404, "{head}");
    assert_eq!(svc.requests.lock().unwrap().len(), 0);
    assert_eq!(agent.agent.live_sessions(), 0);
}

/// Issue 14 item 8: refusals below the upgrade are counted by reason (HTTP ones by status
/// too); a client that closes before sending a byte (a TCP probe) is not.
#[tokio::test]
async fn refusals_below_the_upgrade_are_counted_by_reason() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        "[limits]\nhandshake_timeout = \"300ms\"\n",
    )
    .await;
    let addr = agent.agent.local_addr;
    // Garbage request lines over TLS: hyper answers 400.
    for _ in 0..5 {
        let answer = agent.raw_request("NOT HTTP AT ALL\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    // Plain text where TLS is expected.
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink).await;
    }
    // A TLS handshake that never finishes, and a request head that never finishes.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[22, 3, 1, 0, 200, 1, 0]).await.unwrap();
    let mut tls = agent.tls_stream().await;
    tls.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // A TCP probe: connect and close.
    drop(tokio::net::TcpStream::connect(addr).await.unwrap());

    let metrics = &agent.agent.shared.metrics.proxy;
    let count = |reason: &'static str| {
        metrics
            .connection_refusals
            .get_or_create(&wsrelay::metrics::ReasonLabel { reason })
            .get()
    };
    for _ in 0..100 {
        if count("tls_timeout") == 1 && count("head_timeout") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count("malformed_request"), 5);
    assert_eq!(count("tls_handshake"), 3);
    assert_eq!(count("tls_timeout"), 1);
    assert_eq!(count("head_timeout"), 1);
    assert_eq!(count("tls_incomplete"), 0, "a TCP probe is not a refusal");
    assert_eq!(
        metrics
            .handshake_failures
            .get_or_create(&wsrelay::metrics::StatusLabel {
                status: "400".into()
            })
            .get(),
        5
    );
}
