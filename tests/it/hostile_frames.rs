//! Hostile frames on both legs (RFC 6455 §5, §7.4), with hand-made peers on real sockets:
//! each violation ends the session as the RFC says, with the right close code to the
//! offender, a close to the other leg, nothing of the bad frame relayed, and no reserved code
//! (1005, 1006, 1015) ever on the wire.

use crate::hostile::*;
use crate::support::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const PATH: &str = "/ws/v1/rawsvc/x";

async fn setup() -> (RawService, TestAgent) {
    let svc = RawService::start(Answer::Upgrade(String::new())).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[Inst::new("RAWSVC", "raw-1", svc.port)]),
        "[limits]\nclose_timeout = \"2s\"\n",
    )
    .await;
    (svc, agent)
}

type ClientLeg = FrameReader<TlsStream<TcpStream>>;
type ServiceLeg = FrameReader<TcpStream>;

async fn open(agent: &TestAgent, svc: &mut RawService) -> (ClientLeg, ServiceLeg) {
    let client = raw_session(agent, PATH).await;
    let (_, service) = svc.accept().await;
    (client, service)
}

/// Reads one leg to its close frame, answers it as a live peer does, and checks the end: the
/// relay then drops the connection. Returns the data frames seen and the close code.
async fn close_of<S>(leg: &mut FrameReader<S>, answer_mask: bool) -> (Vec<Frame>, Option<u16>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (seen, close) = leg.until_close().await;
    let close = close.expect("a close frame, not a dropped connection");
    let code = close.close_code();
    let answer = if answer_mask {
        client_frame(0x88, &close.payload)
    } else {
        frame(0x88, &close.payload, None)
    };
    leg.send(&answer).await;
    assert!(
        leg.next().await.is_none(),
        "the relay drops the leg after the close"
    );
    (seen, code)
}

fn is_reserved(code: Option<u16>) -> bool {
    matches!(code, Some(1005 | 1006 | 1015))
}

#[tokio::test]
async fn client_violations_close_the_client_with_1002_or_1007_and_the_service_with_1011() {
    let (mut svc, agent) = setup().await;
    let mask = Some([1, 2, 3, 4]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked client frame", frame(0x81, b"hello", None), 1002),
        ("reserved data opcode 3", client_frame(0x83, b"x"), 1002),
        (
            "reserved control opcode 0xB",
            client_frame(0x8B, b"x"),
            1002,
        ),
        ("RSV1 without extension", client_frame(0xC1, b"x"), 1002),
        ("RSV2", client_frame(0xA1, b"x"), 1002),
        ("RSV3", client_frame(0x91, b"x"), 1002),
        ("fragmented ping", client_frame(0x09, b"p"), 1002),
        (
            "control frame over 125 bytes",
            client_frame(0x89, &[0u8; 126]),
            1002,
        ),
        ("continuation without start", client_frame(0x80, b"x"), 1002),
        (
            "text frame inside a fragmented message",
            [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
            1002,
        ),
        (
            "invalid UTF-8 text",
            client_frame(0x81, &[0xce, 0xba, 0xff, 0xfe]),
            1007,
        ),
        (
            "invalid UTF-8 across fragments",
            [client_frame(0x01, b"ok"), frame(0x80, &[0xc0, 0xaf], mask)].concat(),
            1007,
        ),
        (
            "invalid UTF-8 in a close reason",
            client_frame(0x88, &close_payload(1000, &[0xff, 0xfe])),
            1007,
        ),
        (
            "close with a 1-byte payload",
            client_frame(0x88, &[3]),
            1002,
        ),
    ];
    for (what, bytes, want) in cases {
        let (mut client, mut service) = open(&agent, &mut svc).await;
        client.send(&bytes).await;
        let (c_seen, c_code) = close_of(&mut client, true).await;
        let (s_seen, s_code) = close_of(&mut service, false).await;
        assert_eq!(c_code, Some(want), "{what}: client close");
        assert_eq!(s_code, Some(1011), "{what}: service close");
        assert!(c_seen.is_empty(), "{what}: {c_seen:?}");
        assert!(s_seen.is_empty(), "{what}: reached the service: {s_seen:?}");
        agent.wait_sessions(0).await;
    }
}

#[tokio::test]
async fn reserved_and_invalid_close_codes_never_cross_the_relay() {
    let (mut svc, agent) = setup().await;
    // RFC 6455 §7.4.1/§7.4.2: 1005, 1006, 1015 must not be sent; 0-999, 1004, 1016-2999 and
    // 5000+ are not valid on the wire. The offender gets 1002 and so does the other leg.
    for code in [1005u16, 1006, 1015, 0, 999, 1004, 1016, 2999, 5000, 65535] {
        let (mut client, mut service) = open(&agent, &mut svc).await;
        client
            .send(&client_frame(0x88, &close_payload(code, b"x")))
            .await;
        let (_, c_code) = close_of(&mut client, true).await;
        let (s_seen, s_code) = close_of(&mut service, false).await;
        assert_eq!(c_code, Some(1002), "client sent {code}");
        assert_eq!(s_code, Some(1002), "client sent {code}");
        assert!(s_seen.is_empty());
        agent.wait_sessions(0).await;

        let (mut client, mut service) = open(&agent, &mut svc).await;
        service
            .send(&frame(0x88, &close_payload(code, b"x"), None))
            .await;
        let (_, s_code) = close_of(&mut service, false).await;
        let (_, c_code) = close_of(&mut client, true).await;
        assert_eq!(s_code, Some(1002), "service sent {code}");
        assert_eq!(c_code, Some(1002), "service sent {code}");
        assert!(!is_reserved(c_code) && !is_reserved(s_code));
        agent.wait_sessions(0).await;
    }
    // Valid codes and reasons pass unchanged, both ways, including a 123-byte reason.
    let long = "r".repeat(123);
    for (code, reason) in [
        (1000u16, ""),
        (1001, "away"),
        (3000, "iana"),
        (4999, long.as_str()),
    ] {
        let (mut client, mut service) = open(&agent, &mut svc).await;
        client
            .send(&client_frame(0x88, &close_payload(code, reason.as_bytes())))
            .await;
        let (s_seen, s_close) = service.until_close().await;
        assert!(s_seen.is_empty());
        let s_close = s_close.unwrap();
        assert_eq!(s_close.close_code(), Some(code));
        assert_eq!(&s_close.payload[2..], reason.as_bytes());
        service.send(&frame(0x88, &s_close.payload, None)).await;
        let (_, c_code) = close_of(&mut client, true).await;
        assert_eq!(c_code, Some(code));
        assert!(service.next().await.is_none());
        agent.wait_sessions(0).await;

        let (mut client, mut service) = open(&agent, &mut svc).await;
        service
            .send(&frame(0x88, &close_payload(code, reason.as_bytes()), None))
            .await;
        let (_, c_close) = client.until_close().await;
        let c_close = c_close.unwrap();
        assert_eq!(c_close.close_code(), Some(code));
        assert_eq!(&c_close.payload[2..], reason.as_bytes());
        client.send(&client_frame(0x88, &c_close.payload)).await;
        let (_, s_code) = close_of(&mut service, false).await;
        assert_eq!(s_code, Some(code));
        agent.wait_sessions(0).await;
    }
    // A close without a code stays one without a code.
    let (mut client, mut service) = open(&agent, &mut svc).await;
    client.send(&client_frame(0x88, b"")).await;
    let (_, s_close) = service.until_close().await;
    assert_eq!(s_close.unwrap().payload, b"");
    drop(service);
    let (_, c_close) = client.until_close().await;
    assert!(!is_reserved(c_close.unwrap().close_code()));
    agent.wait_sessions(0).await;
}

#[tokio::test]
async fn service_violations_close_the_service_with_1002_or_1007_and_the_client_with_1011() {
    let (mut svc, agent) = setup().await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "masked server frame",
            frame(0x81, b"hello", Some([9, 9, 9, 9])),
            1002,
        ),
        ("RSV1 without extension", frame(0xC1, b"x", None), 1002),
        ("reserved data opcode 4", frame(0x84, b"x", None), 1002),
        ("reserved control opcode 0xC", frame(0x8C, b"x", None), 1002),
        ("fragmented close", frame(0x08, b"", None), 1002),
        ("continuation without start", frame(0x80, b"x", None), 1002),
        (
            "invalid UTF-8 text",
            frame(0x81, &[0xed, 0xa0, 0x80], None),
            1007,
        ),
        (
            "invalid UTF-8 in a close reason",
            frame(0x88, &close_payload(1000, &[0xff]), None),
            1007,
        ),
    ];
    for (what, bytes, want) in cases {
        let (mut client, mut service) = open(&agent, &mut svc).await;
        service.send(&bytes).await;
        let (s_seen, s_code) = close_of(&mut service, false).await;
        let (c_seen, c_code) = close_of(&mut client, true).await;
        assert_eq!(s_code, Some(want), "{what}: service close");
        assert_eq!(c_code, Some(1011), "{what}: client close");
        assert!(s_seen.is_empty(), "{what}: {s_seen:?}");
        assert!(c_seen.is_empty(), "{what}: reached the client: {c_seen:?}");
        agent.wait_sessions(0).await;
    }
}

#[tokio::test]
async fn good_frames_are_reframed_masking_follows_the_role() {
    let (mut svc, agent) = setup().await;
    let (mut client, mut service) = open(&agent, &mut svc).await;
    // A fragmented text with a ping in the middle: the service gets one whole message,
    // masked (the relay is a client there); the client gets its pong from the relay.
    client.send(&client_frame(0x01, "héllo ".as_bytes())).await;
    client.send(&client_frame(0x89, b"ping!")).await;
    client.send(&client_frame(0x80, "wörld".as_bytes())).await;
    let pong = client.next().await.unwrap();
    assert_eq!(
        (pong.opcode(), pong.payload.as_slice()),
        (0xA, &b"ping!"[..])
    );
    let mut got = Vec::new();
    while got.iter().all(|f: &Frame| f.opcode() != 1) {
        got.push(service.next().await.unwrap());
    }
    let text = got.iter().find(|f| f.opcode() == 1).unwrap();
    assert!(text.masked && text.first & 0x80 != 0);
    assert_eq!(text.payload, "héllo wörld".as_bytes());
    // Service → client: unmasked, whole.
    service.send(&frame(0x82, &[0, 1, 2, 255], None)).await;
    let f = client.next().await.unwrap();
    assert_eq!(
        (f.first, f.masked, f.payload.as_slice()),
        (0x82, false, &[0u8, 1, 2, 255][..])
    );
    client
        .send(&client_frame(0x88, &close_payload(1000, b"done")))
        .await;
    let (_, s_code) = close_of(&mut service, false).await;
    let (_, c_code) = close_of(&mut client, true).await;
    assert_eq!((s_code, c_code), (Some(1000), Some(1000)));
    agent.wait_sessions(0).await;
}
