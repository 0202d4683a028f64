use super::*;
use crate::close::close_frame;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// A test peer (client or service) speaking through tungstenite.
type Ws = WebSocketStream<DuplexStream>;
/// One of the relay's own legs.
pub(super) type RelayLeg = crate::ws::leg::Leg<DuplexStream>;

/// Returns (peer client, relay's client leg, relay's service leg, peer service).
async fn legs(max: usize) -> (Ws, RelayLeg, RelayLeg, Ws) {
    let limits = crate::ws::leg::Limits {
        max_message_size: max,
        max_frame_size: max,
    };
    let (a, b) = tokio::io::duplex(1 << 16);
    let (c, d) = tokio::io::duplex(1 << 16);
    (
        WebSocketStream::from_raw_socket(a, Role::Client, None).await,
        RelayLeg::new(b, Role::Server, limits),
        RelayLeg::new(c, Role::Client, limits),
        WebSocketStream::from_raw_socket(d, Role::Server, None).await,
    )
}

fn cfg() -> RelayConfig {
    RelayConfig::default()
}

pub(super) async fn next_close(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => {
                // Flush our close answer, as a live peer does.
                let _ = ws.flush().await;
                return f;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn messages_flow_both_ways_and_client_close_code_reaches_the_service() {
    let (mut client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let counters = Counters::default();
    let token = CancellationToken::new();
    let relay = tokio::spawn(async move {
        let counters = counters;
        let o = relay(c_leg, s_leg, &counters, &cfg(), &token).await;
        (
            o,
            counters.messages_in.load(Ordering::Relaxed),
            counters.bytes_out.load(Ordering::Relaxed),
        )
    });
    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        service.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    service
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    client
        .send(Message::Close(Some(close_frame(
            CloseCode::from(4000),
            "bye",
        ))))
        .await
        .unwrap();
    let f = next_close(&mut service).await.unwrap();
    assert_eq!((u16::from(f.code), f.reason.as_str()), (4000, "bye"));
    drop(service);
    let (o, msgs_in, bytes_out) = relay.await.unwrap();
    assert_eq!(o.closed_by, Some(Side::Client));
    assert_eq!(o.code, Some(4000));
    assert_eq!((msgs_in, bytes_out), (1, 3));
}

#[tokio::test]
async fn service_close_code_reaches_the_client() {
    let (mut client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let relay =
        tokio::spawn(
            async move { relay(c_leg, s_leg, &Counters::default(), &cfg(), &token).await },
        );
    service
        .send(Message::Close(Some(close_frame(CloseCode::Again, "later"))))
        .await
        .unwrap();
    let f = next_close(&mut client).await.unwrap();
    assert_eq!((u16::from(f.code), f.reason.as_str()), (1013, "later"));
    drop(client);
    let o = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (Some(Side::Service), Some(1013)));
}

#[tokio::test]
async fn abnormal_service_end_closes_the_client_with_1011() {
    let (mut client, c_leg, s_leg, service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let relay =
        tokio::spawn(
            async move { relay(c_leg, s_leg, &Counters::default(), &cfg(), &token).await },
        );
    drop(service);
    let f = next_close(&mut client).await.unwrap();
    assert_eq!(u16::from(f.code), 1011);
    let o = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (Some(Side::Service), Some(1011)));
}

#[tokio::test]
async fn oversized_message_closes_both_legs_with_1009() {
    let (mut client, c_leg, s_leg, mut service) = legs(1024).await;
    let token = CancellationToken::new();
    let relay =
        tokio::spawn(
            async move { relay(c_leg, s_leg, &Counters::default(), &cfg(), &token).await },
        );
    client.send(Message::binary(vec![0u8; 4096])).await.unwrap();
    assert_eq!(u16::from(next_close(&mut client).await.unwrap().code), 1009);
    assert_eq!(
        u16::from(next_close(&mut service).await.unwrap().code),
        1009
    );
    let o = relay.await.unwrap();
    assert_eq!(o.code, Some(1009));
}

#[tokio::test]
async fn shutdown_sends_1001_to_both() {
    let (mut client, c_leg, s_leg, mut service) = legs(1024).await;
    let token = CancellationToken::new();
    let t2 = token.clone();
    let relay =
        tokio::spawn(async move { relay(c_leg, s_leg, &Counters::default(), &cfg(), &t2).await });
    token.cancel();
    assert_eq!(u16::from(next_close(&mut client).await.unwrap().code), 1001);
    assert_eq!(
        u16::from(next_close(&mut service).await.unwrap().code),
        1001
    );
    assert_eq!(relay.await.unwrap().code, Some(1001));
}

/// Issue 14 item 5: when the client closes first, what the service sent before its close
/// answer reaches the client (the message the relay held for the backed-up client first),
/// then the client's answer, as through a tunnel; each one is counted.
#[tokio::test(start_paused = true)]
async fn a_client_close_still_gets_what_the_service_sent_before_its_answer() {
    let (mut client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let counters = std::sync::Arc::new(Counters::default());
    let c2 = std::sync::Arc::clone(&counters);
    let relay = tokio::spawn(async move { relay(c_leg, s_leg, &c2, &cfg(), &token).await });
    const N: usize = 20;
    // The service sends N messages (the client reads none meanwhile, so the relay stops
    // reading the service and holds one), then answers the close.
    let service_side = tokio::spawn(async move {
        for i in 0..N {
            service
                .send(Message::binary(vec![i as u8; 32 * 1024]))
                .await
                .unwrap();
        }
        next_close(&mut service).await.map(|f| u16::from(f.code))
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .send(Message::Close(Some(close_frame(
            CloseCode::from(4000),
            "bye",
        ))))
        .await
        .unwrap();
    for i in 0..N {
        match client.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!((b.len(), b[0]), (32 * 1024, i as u8)),
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert_eq!(u16::from(next_close(&mut client).await.unwrap().code), 4000);
    assert!(matches!(client.next().await, None | Some(Err(_))));
    assert_eq!(service_side.await.unwrap(), Some(4000));
    let o = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (Some(Side::Client), Some(4000)));
    assert_eq!(counters.messages_out.load(Ordering::Relaxed), N as u64);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_answers_the_close_is_dropped_after_the_timeout() {
    let (mut client, c_leg, s_leg, service) = legs(1024).await;
    let token = CancellationToken::new();
    let relay =
        tokio::spawn(
            async move { relay(c_leg, s_leg, &Counters::default(), &cfg(), &token).await },
        );
    client.send(Message::Close(None)).await.unwrap();
    // `service` is alive but never reads: the relay gives up after close_timeout.
    let o = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (Some(Side::Client), None));
    drop(service);
}

fn short_cfg() -> RelayConfig {
    RelayConfig {
        close_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(600),
        write_timeout: Duration::from_secs(60),
        keepalive: None,
        ..RelayConfig::default()
    }
}

/// [`short_cfg`] with keepalive pings every `interval_s` seconds, `timeout_s` to answer.
fn keepalive_cfg(interval_s: u64, timeout_s: u64) -> RelayConfig {
    RelayConfig {
        keepalive: Some(Keepalive {
            interval: Duration::from_secs(interval_s),
            timeout: Duration::from_secs(timeout_s),
        }),
        ..short_cfg()
    }
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_are_closed_with_1000_and_data_resets_the_timer() {
    let (mut client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let relay = tokio::spawn(async move {
        relay(c_leg, s_leg, &Counters::default(), &short_cfg(), &token).await
    });
    // Data after 400 s restarts the 600 s idle timer.
    tokio::time::sleep(Duration::from_secs(400)).await;
    client.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        service.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    let (a, b) = tokio::join!(next_close(&mut client), next_close(&mut service));
    for f in [a, b] {
        let f = f.unwrap();
        assert_eq!(
            (u16::from(f.code), f.reason.as_str()),
            (1000, "idle timeout")
        );
    }
    // Closed 600 s after the last message, not 600 s after the start.
    assert!(started.elapsed() >= Duration::from_secs(1000));
    let o = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (None, Some(1000)));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_cannot_grow_buffers_and_is_dropped_after_the_write_timeout() {
    let (client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let relay = tokio::spawn(async move {
        relay(c_leg, s_leg, &Counters::default(), &short_cfg(), &token).await
    });
    // The service writes as fast as it can; the client never reads.
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0usize;
    loop {
        match tokio::time::timeout(
            Duration::from_secs(1),
            service.send(Message::binary(chunk.clone())),
        )
        .await
        {
            Ok(Ok(())) => written += chunk.len(),
            _ => break,
        }
        assert!(
            written < 8 << 20,
            "the relay kept accepting data from the service"
        );
    }
    // Both pipes hold 64 KiB each; a leg buffers at most a message more per side.
    assert!(
        written <= 4 * 64 * 1024 + 2 * chunk.len(),
        "{written} bytes accepted"
    );
    // After the write timeout the client is dropped and the service gets 1011.
    let f = next_close(&mut service).await.unwrap();
    assert_eq!(u16::from(f.code), 1011);
    assert_eq!(f.reason.as_str(), "client is not reading");
    let o = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (Some(Side::Client), Some(1011)));
    drop(client);
}

/// Issue 14 item 4: with a client that does not read, the relay takes one message from
/// the service and leaves the next in the service's socket (it used to read a second one
/// and hold it while waiting).
#[tokio::test]
async fn a_stalled_client_makes_the_relay_hold_one_message_not_two() {
    let (client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let relay = tokio::spawn(async move {
        relay(c_leg, s_leg, &Counters::default(), &short_cfg(), &token).await
    });
    // Messages larger than both pipes: a send completes only once the relay read it.
    let big = vec![5u8; 200 * 1024];
    let mut completed = 0;
    for _ in 0..3 {
        match tokio::time::timeout(
            Duration::from_secs(1),
            service.send(Message::binary(big.clone())),
        )
        .await
        {
            Ok(Ok(())) => completed += 1,
            _ => break,
        }
    }
    assert_eq!(completed, 1, "messages the relay took from the service");
    drop((client, service));
    let _ = relay.await;
}

/// Issue 14 item 2: while the client does not read, the relay stops reading the service,
/// so the service's pongs wait unread: the healthy service must not be declared gone by
/// keepalive; the client is dropped by the write timeout instead.
#[tokio::test(start_paused = true)]
async fn keepalive_does_not_judge_a_leg_the_relay_is_not_reading() {
    let (client, c_leg, s_leg, service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let cfg = RelayConfig {
        write_timeout: Duration::from_secs(120),
        ..keepalive_cfg(30, 10)
    };
    let relay =
        tokio::spawn(async move { relay(c_leg, s_leg, &Counters::default(), &cfg, &token).await });
    // The service sends big messages and reads (answering pings) at the same time.
    let (mut s_tx, mut s_rx) = service.split();
    let writer = tokio::spawn(async move {
        let big = vec![1u8; 200 * 1024];
        while s_tx.send(Message::binary(big.clone())).await.is_ok() {}
    });
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = s_rx.next().await {} });
    let o = relay.await.unwrap();
    assert_eq!(o.closed_by, Some(Side::Client), "{o:?}");
    assert_eq!(o.reason, "client is not reading", "{o:?}");
    writer.abort();
    reader.abort();
    drop(client);
}

/// Issue 14 item 2: a service sending one long message slowly cannot answer a ping before
/// the message ends; bytes arriving count as hearing it, so it is not declared gone.
#[tokio::test(start_paused = true)]
async fn keepalive_counts_bytes_of_a_message_still_arriving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = crate::ws::leg::Limits {
        max_message_size: 1 << 20,
        max_frame_size: 1 << 20,
    };
    let (a, b) = tokio::io::duplex(1 << 16);
    let (c, d) = tokio::io::duplex(1 << 16);
    let mut client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
    let (c_leg, s_leg) = (
        RelayLeg::new(b, Role::Server, limits),
        RelayLeg::new(c, Role::Client, limits),
    );
    let token = CancellationToken::new();
    let cfg = keepalive_cfg(10, 5);
    let relay =
        tokio::spawn(async move { relay(c_leg, s_leg, &Counters::default(), &cfg, &token).await });
    // The service: one unmasked 60 KiB binary frame, 1 KiB a second (60 s, four times
    // interval + timeout); what the relay sends it (pings) is read and dropped.
    let (mut s_read, mut s_write) = tokio::io::split(d);
    let drain = tokio::spawn(async move {
        let mut sink = [0u8; 1024];
        while s_read.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let len: u16 = 60 * 1024;
    let writer = tokio::spawn(async move {
        let [hi, lo] = len.to_be_bytes();
        s_write.write_all(&[0x82, 126, hi, lo]).await.unwrap();
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s_write.write_all(&[7u8; 1024]).await.unwrap();
        }
        s_write
    });
    // The client answers pings (its tungstenite does) and gets the whole message.
    loop {
        match client.next().await {
            Some(Ok(Message::Binary(b))) => {
                assert_eq!(b.len(), usize::from(len));
                break;
            }
            Some(Ok(m)) if m.is_ping() => {}
            other => panic!("expected the service's message, got {other:?}"),
        }
    }
    assert!(!relay.is_finished());
    let _s_write = writer.await.unwrap();
    relay.abort();
    drain.abort();
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_both_legs_and_drops_a_client_that_never_answers() {
    let (mut client, c_leg, s_leg, mut service) = legs(1 << 20).await;
    let token = CancellationToken::new();
    let cfg = keepalive_cfg(30, 10);
    let relay =
        tokio::spawn(async move { relay(c_leg, s_leg, &Counters::default(), &cfg, &token).await });
    // The service keeps reading (so its tungstenite answers the pings) until it gets a close.
    let service_side = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            match service.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Close(f))) => return (pings, f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    });
    // A live client reads too: pings arrive and nothing closes.
    for _ in 0..3 {
        let m = client.next().await.unwrap().unwrap();
        assert!(m.is_ping(), "{m:?}");
    }
    // Now the client stops reading: no pong comes back, and after interval + timeout the
    // client counts as gone; the service gets 1001.
    let (pings, code) = service_side.await.unwrap();
    assert!(pings >= 3, "{pings}");
    assert_eq!(code, Some(1001));
    let o = relay.await.unwrap();
    assert_eq!(o.closed_by, Some(Side::Client));
    assert!(o.reason.contains("keepalive"), "{}", o.reason);
    drop(client);
}
