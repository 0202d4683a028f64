use super::*;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::WebSocketStream;

fn limits(max: usize) -> Limits {
    Limits {
        max_message_size: max,
        max_frame_size: max,
    }
}

/// A server-role leg and the raw client end of its connection.
fn server_leg(max: usize) -> (Leg<DuplexStream>, DuplexStream) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (Leg::new(a, Role::Server, limits(max)), b)
}

/// One frame as a peer writes it, from its first byte (FIN, RSV, opcode) and payload,
/// masked with `mask` (a client's key); encoded by tungstenite, an independent encoder.
fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    let header = FrameHeader {
        is_final: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode: (b0 & 0x0f).into(),
        mask,
    };
    let mut out = Vec::new();
    Frame::from_payload(header, payload.to_vec().into())
        .format(&mut out)
        .unwrap();
    out
}

const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

async fn read_exact(raw: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    raw.read_exact(&mut v).await.unwrap();
    v
}

#[tokio::test]
async fn messages_of_every_length_encoding_cross_and_an_idle_leg_holds_no_buffer() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut leg = Leg::new(a, Role::Server, limits(1 << 20));
    let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    for size in [0usize, 125, 126, 300, 65_535, 65_536, 200_000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let (sent, got) = tokio::join!(peer.send(Message::binary(data.clone())), leg.next());
        sent.unwrap();
        assert_eq!(got.unwrap().unwrap(), Message::binary(data.clone()));
        let (sent, got) = tokio::join!(leg.send(Message::binary(data.clone())), peer.next());
        sent.unwrap();
        assert_eq!(got.unwrap().unwrap(), Message::binary(data));
    }
    peer.send(Message::text("héllo")).await.unwrap();
    assert_eq!(leg.next().await.unwrap().unwrap(), Message::text("héllo"));
    // Nothing more to read: the leg waits holding no buffer.
    assert!(leg.next().now_or_never().is_none());
    assert_eq!(leg.buffered_capacity(), 0);
}

#[tokio::test]
async fn the_client_role_masks_every_frame_with_a_fresh_key() {
    let (a, mut raw) = tokio::io::duplex(1 << 16);
    let mut leg = Leg::new(a, Role::Client, limits(1 << 20));
    leg.send(Message::text("abc")).await.unwrap();
    leg.send(Message::text("abc")).await.unwrap();
    let one = read_exact(&mut raw, 9).await;
    let two = read_exact(&mut raw, 9).await;
    for f in [&one, &two] {
        assert_eq!(&f[..2], &[0x81, 0x83]);
        let k = &f[2..6];
        let plain: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ k[i % 4])
            .collect();
        assert_eq!(plain, b"abc");
    }
    assert_ne!(one[2..6], two[2..6], "a masking key was reused");
    // Frames from a server must not be masked.
    raw.write_all(&frame(0x81, b"x", KEY)).await.unwrap();
    assert!(matches!(
        leg.next().await,
        Some(Err(WsError::Protocol(ProtocolError::MaskedFrameFromServer)))
    ));
    assert!(leg.next().await.is_none());
}

#[tokio::test]
async fn fragmented_text_is_joined_and_checked_across_fragment_boundaries() {
    let (mut leg, mut raw) = server_leg(1 << 20);
    let text = "hé€𝄞!".as_bytes();
    // Split inside the multi-byte characters, with a ping between fragments.
    raw.write_all(&frame(0x01, &text[..2], KEY)).await.unwrap();
    raw.write_all(&frame(0x89, b"p", KEY)).await.unwrap();
    raw.write_all(&frame(0x00, &text[2..7], KEY)).await.unwrap();
    raw.write_all(&frame(0x80, &text[7..], KEY)).await.unwrap();
    assert_eq!(
        leg.next().await.unwrap().unwrap(),
        Message::Ping("p".into())
    );
    assert_eq!(leg.next().await.unwrap().unwrap(), Message::text("hé€𝄞!"));
    // The ping was answered with a pong carrying its payload, unmasked.
    assert_eq!(read_exact(&mut raw, 3).await, vec![0x8a, 0x01, b'p']);
}

/// Issue 14 item 1: pings that arrive while the output is backed up are answered (the
/// latest one) once it drains, not dropped.
#[tokio::test]
async fn a_ping_under_backpressure_is_answered_once_the_output_drains() {
    let (a, mut raw) = tokio::io::duplex(1024);
    let mut leg = Leg::new(a, Role::Server, limits(1 << 20));
    let big = vec![7u8; 20_000];
    leg.feed(Message::binary(big.clone())).await.unwrap();
    assert!(leg.queued() >= WRITE_HIGH_WATER);
    raw.write_all(&frame(0x89, b"p1", KEY)).await.unwrap();
    raw.write_all(&frame(0x89, b"p2", KEY)).await.unwrap();
    assert_eq!(
        leg.next().await.unwrap().unwrap(),
        Message::Ping("p1".into())
    );
    assert_eq!(
        leg.next().await.unwrap().unwrap(),
        Message::Ping("p2".into())
    );
    // The peer reads: the message, then one pong with the latest payload.
    let read = async {
        let head = read_exact(&mut raw, 4).await;
        assert_eq!(
            head,
            vec![0x82, 126, (20_000u16 >> 8) as u8, (20_000u16 & 0xff) as u8]
        );
        assert_eq!(read_exact(&mut raw, 20_000).await, big);
        read_exact(&mut raw, 4).await
    };
    let pong = tokio::select! {
        pong = read => pong,
        other = leg.next() => panic!("the leg ended: {other:?}"),
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => panic!("no pong"),
    };
    assert_eq!(pong, vec![0x8a, 0x02, b'p', b'2']);
}

#[tokio::test]
async fn invalid_utf8_fails_at_the_first_bad_fragment() {
    let (mut leg, mut raw) = server_leg(1 << 20);
    raw.write_all(&frame(0x01, b"ok\xff", KEY)).await.unwrap();
    // No final fragment is ever sent: the error comes from the first one.
    assert!(matches!(leg.next().await, Some(Err(WsError::Utf8(_)))));
    let (mut leg, mut raw) = server_leg(1 << 20);
    raw.write_all(&frame(0x81, b"\xc3", KEY)).await.unwrap();
    assert!(matches!(leg.next().await, Some(Err(WsError::Utf8(_)))));
}

#[tokio::test]
async fn protocol_violations_are_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frame(0xc1, b"x", KEY), "reserved bit"),
        (frame(0x83, b"x", KEY), "unknown data opcode"),
        (frame(0x8b, b"x", KEY), "unknown control opcode"),
        (frame(0x09, b"x", KEY), "fragmented ping"),
        (frame(0x89, &[0u8; 126], KEY), "ping over 125 bytes"),
        (frame(0x81, b"x", None), "unmasked frame from a client"),
        (frame(0x80, b"x", KEY), "continuation without a message"),
        (
            [frame(0x01, b"a", KEY), frame(0x81, b"b", KEY)].concat(),
            "new message inside a fragmented one",
        ),
        (frame(0x88, &[3], KEY), "close payload of one byte"),
        (frame(0x88, b"\x03\xe8\xff", KEY), "close reason not UTF-8"),
    ];
    for (bytes, what) in cases {
        let (mut leg, mut raw) = server_leg(1 << 20);
        raw.write_all(&bytes).await.unwrap();
        let r = leg.next().await;
        assert!(
            matches!(r, Some(Err(WsError::Protocol(_) | WsError::Utf8(_)))),
            "{what}: {r:?}"
        );
        assert!(leg.next().await.is_none(), "{what}: the stream goes on");
    }
}

#[tokio::test]
async fn limits_are_checked_from_the_header_before_the_payload_arrives() {
    let (mut leg, mut raw) = server_leg(1000);
    // Only the header of a 1 GiB frame is sent.
    raw.write_all(&[0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4])
        .await
        .unwrap();
    assert!(matches!(
        leg.next().await,
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
            size: 1_073_741_824,
            max_size: 1000
        })))
    ));
    assert_eq!(leg.buffered_capacity(), 0);
    // Fragments that each fit but add up to more than the message limit.
    let (mut leg, mut raw) = server_leg(1000);
    raw.write_all(&frame(0x02, &[0u8; 600], KEY)).await.unwrap();
    raw.write_all(&frame(0x80, &[0u8; 600], KEY)).await.unwrap();
    assert!(matches!(
        leg.next().await,
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
            size: 1200,
            ..
        })))
    ));
}

#[tokio::test]
async fn a_close_is_answered_once_with_its_code_or_1002_and_ends_the_stream() {
    for (code, answer) in [(4000u16, 4000u16), (1005, 1002), (999, 1002), (2000, 1002)] {
        let (mut leg, mut raw) = server_leg(1 << 20);
        let payload = [&code.to_be_bytes()[..], b"bye"].concat();
        raw.write_all(&frame(0x88, &payload, KEY)).await.unwrap();
        let Some(Ok(Message::Close(Some(f)))) = leg.next().await else {
            panic!("no close for {code}");
        };
        assert_eq!(u16::from(f.code), answer);
        assert!(leg.next().await.is_none());
        // Until the answer, data still goes out (issue 14 item 5), before the answer.
        leg.send(Message::text("last")).await.unwrap();
        assert_eq!(read_exact(&mut raw, 6).await, b"\x81\x04last");
        leg.close().await.unwrap();
        let got = read_exact(&mut raw, 2).await;
        assert_eq!(got[0], 0x88);
        let rest = read_exact(&mut raw, usize::from(got[1])).await;
        assert_eq!(u16::from_be_bytes([rest[0], rest[1]]), answer);
        // Nothing can be sent after the close.
        assert!(leg.send(Message::text("late")).await.is_err());
    }
}

#[tokio::test]
async fn our_close_is_answered_and_the_end_without_a_close_is_a_reset() {
    let (mut leg, mut raw) = server_leg(1 << 20);
    leg.send(Message::Close(None)).await.unwrap();
    assert_eq!(read_exact(&mut raw, 2).await, vec![0x88, 0x00]);
    raw.write_all(&frame(0x88, &[], KEY)).await.unwrap();
    assert_eq!(leg.next().await.unwrap().unwrap(), Message::Close(None));
    assert!(leg.next().await.is_none());

    let (mut leg, mut raw) = server_leg(1 << 20);
    // Half a frame, then the connection ends.
    raw.write_all(&frame(0x82, b"abcdef", KEY)[..5])
        .await
        .unwrap();
    drop(raw);
    assert!(matches!(
        leg.next().await,
        Some(Err(WsError::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
        )))
    ));
    assert!(leg.next().await.is_none());
}

#[test]
fn masking_matches_the_bytewise_definition_at_every_length() {
    let key = [0xa1, 0x02, 0xf3, 0x44];
    for n in 0..40 {
        let data: Vec<u8> = (0..n as u8).collect();
        let mut fast = data.clone();
        apply_mask(&mut fast, key);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(fast, slow, "length {n}");
    }
}

/// permessage-deflate on a leg (RFC 7692): a compressed message, whole or in fragments, is
/// inflated (the RFC's own "Hello"); one that inflates past the limit is a 1009 error before it
/// is inflated further; what the leg sends is compressed with RSV1 on its first frame.
#[tokio::test]
async fn a_deflate_leg_inflates_checks_the_inflated_size_and_compresses_what_it_sends() {
    use crate::ws::deflate::{Agreed, Codec};
    let cfg = crate::config::DeflateConfig::default();
    let agreed = Agreed {
        send_bits: 15,
        send_reset: true,
        recv_reset: true,
    };
    let (leg, mut raw) = server_leg(64 << 10);
    let mut leg = leg.with_deflate(Some(Codec::new(agreed, &cfg)));
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    raw.write_all(&frame(0xc1, &hello, KEY)).await.unwrap();
    assert_eq!(leg.next().await.unwrap().unwrap(), Message::text("Hello"));
    // In two fragments: RSV1 on the first only.
    raw.write_all(&frame(0x41, &hello[..3], KEY)).await.unwrap();
    raw.write_all(&frame(0x80, &hello[3..], KEY)).await.unwrap();
    assert_eq!(leg.next().await.unwrap().unwrap(), Message::text("Hello"));
    // What the leg sends: compressed, and it reads back.
    let text = "{\"status\":\"UP\"},".repeat(100);
    leg.send(Message::text(text.clone())).await.unwrap();
    let head = read_exact(&mut raw, 2).await;
    assert_eq!(head[0], 0xc1, "FIN, RSV1, text");
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126 && len < text.len() / 10, "{len} bytes");
    let z = read_exact(&mut raw, len).await;
    let mut reader = Codec::new(agreed, &cfg);
    assert_eq!(reader.inflate(&z, 1 << 20).unwrap(), text.as_bytes());
    // Below deflate.min_message_size: sent as is.
    leg.send(Message::text("hi")).await.unwrap();
    assert_eq!(read_exact(&mut raw, 4).await, [0x81, 2, b'h', b'i']);
    // A few KiB that inflate to 4 MiB: 1009 at the limit (64 KiB), not after 4 MiB.
    let bomb = Codec::new(agreed, &cfg)
        .compress(&vec![0u8; 4 << 20], <[u8]>::to_vec)
        .unwrap();
    assert!(bomb.len() < 64 << 10);
    raw.write_all(&frame(0xc2, &bomb, KEY)).await.unwrap();
    match leg.next().await.unwrap() {
        Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
            assert_eq!((size, max_size), ((64 << 10) + 1, 64 << 10));
        }
        other => panic!("{other:?}"),
    }
}

/// Without deflate agreed, RSV1 is a protocol error; with it, bad compressed data is a 1007
/// error naming permessage-deflate.
#[tokio::test]
async fn rsv1_without_deflate_and_bad_compressed_data_fail_the_leg() {
    let (mut leg, mut raw) = server_leg(1 << 20);
    raw.write_all(&frame(0xc1, b"x", KEY)).await.unwrap();
    assert!(matches!(
        leg.next().await.unwrap(),
        Err(WsError::Protocol(ProtocolError::NonZeroReservedBits))
    ));
    let (leg, mut raw) = server_leg(1 << 20);
    let cfg = crate::config::DeflateConfig::default();
    let agreed = crate::ws::deflate::Agreed {
        send_bits: 15,
        send_reset: true,
        recv_reset: true,
    };
    let mut leg = leg.with_deflate(Some(crate::ws::deflate::Codec::new(agreed, &cfg)));
    raw.write_all(&frame(0xc2, &[0xff, 0xff, 0xff], KEY))
        .await
        .unwrap();
    match leg.next().await.unwrap() {
        Err(WsError::Utf8(cause)) => assert!(cause.starts_with(INVALID_DEFLATE), "{cause}"),
        other => panic!("{other:?}"),
    }
}

/// With permessage-deflate on both legs, a compressed message crosses as it is: the source leg
/// checks it (by inflating) and hands on the compressed payload, and a destination that can
/// send it sends the same bytes with RSV1; a destination without deflate gets it inflated.
/// Invalid UTF-8 inside a compressed text message is still caught (1007).
#[tokio::test]
async fn a_compressed_message_crosses_as_it_is_between_deflate_legs() {
    use crate::ws::deflate::{Agreed, Codec};
    let cfg = crate::config::DeflateConfig::default();
    let agreed = Agreed {
        send_bits: 15,
        send_reset: true,
        recv_reset: true,
    };
    let (leg, mut raw) = server_leg(1 << 20);
    let mut src = leg.with_deflate(Some(Codec::new(agreed, &cfg)));
    let dest_codec = Codec::new(agreed, &cfg);
    src.forward_compressed_to(Some(&dest_codec));
    let text = "{\"status\":\"UP\"},".repeat(200);
    let z = Codec::new(agreed, &cfg)
        .compress(text.as_bytes(), <[u8]>::to_vec)
        .unwrap();
    raw.write_all(&frame(0xc1, &z, KEY)).await.unwrap();
    let m = src.next().await.unwrap().unwrap();
    let Message::Frame(f) = &m else {
        panic!("{m:?}")
    };
    assert!(f.header().rsv1);
    assert_eq!(f.payload(), &z[..], "the compressed bytes, untouched");

    // A destination with deflate sends the same payload with RSV1 (server role: unmasked).
    let (dest, mut dest_raw) = server_leg(1 << 20);
    let mut dest = dest.with_deflate(Some(dest_codec));
    dest.send(m.clone()).await.unwrap();
    assert!(z.len() < 126);
    let head = read_exact(&mut dest_raw, 2).await;
    assert_eq!((head[0], usize::from(head[1])), (0xc1, z.len()));
    assert_eq!(read_exact(&mut dest_raw, z.len()).await, z);
    // A destination without deflate gets the text.
    let (mut plain, mut plain_raw) = server_leg(1 << 20);
    plain.send(m).await.unwrap();
    let head = read_exact(&mut plain_raw, 4).await;
    assert_eq!(head[0], 0x81);
    let n = usize::from(u16::from_be_bytes([head[2], head[3]]));
    assert_eq!(read_exact(&mut plain_raw, n).await, text.as_bytes());

    // Not UTF-8 inside: refused as any text message.
    let bad = Codec::new(agreed, &cfg)
        .compress(&[0xff; 100], <[u8]>::to_vec)
        .unwrap();
    raw.write_all(&frame(0xc1, &bad, KEY)).await.unwrap();
    assert!(matches!(src.next().await.unwrap(), Err(WsError::Utf8(_))));
}
