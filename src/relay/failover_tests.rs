use super::tests::next_close;
use super::*;
use crate::close::close_frame;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::tests::RelayLeg;

/// A test peer (client or service) speaking through tungstenite.
type Ws = WebSocketStream<DuplexStream>;

/// The relay's client leg and the client peer.
async fn client_pair() -> (RelayLeg, Ws) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (
        RelayLeg::new(a, Role::Server, Default::default()),
        WebSocketStream::from_raw_socket(b, Role::Client, None).await,
    )
}

/// The relay's service leg and the service peer.
async fn service_pair() -> (RelayLeg, Ws) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (
        RelayLeg::new(a, Role::Client, Default::default()),
        WebSocketStream::from_raw_socket(b, Role::Server, None).await,
    )
}

/// Opens when the test says so (`None`: open).
type Gate = Option<oneshot::Receiver<()>>;

/// Hands out prepared service legs, each once its gate opens; records the calls.
#[derive(Default)]
struct Fake {
    legs: Vec<(Gate, Result<RelayLeg, Refused>)>,
    max: u32,
    switches: u32,
    log: Arc<Mutex<Vec<String>>>,
    /// Told when `reconnect` starts.
    started: Option<tokio::sync::mpsc::UnboundedSender<()>>,
}

impl Reconnect<RelayLeg> for Fake {
    fn may_switch(&self) -> bool {
        self.switches < self.max
    }

    async fn reconnect(&mut self) -> Result<RelayLeg, Refused> {
        if let Some(s) = &self.started {
            let _ = s.send(());
        }
        if self.legs.is_empty() {
            return Err(Refused {
                code: CloseCode::Again,
                reason: "no other live instance".into(),
            });
        }
        let (gate, leg) = self.legs.remove(0);
        if let Some(g) = gate {
            let _ = g.await;
        }
        leg
    }

    fn switched(&mut self, cause: &str, n: usize, bytes: usize) {
        self.switches += 1;
        self.log
            .lock()
            .unwrap()
            .push(format!("switched {n} {bytes} {cause}"));
    }

    fn gave_up(&mut self, cause: &str, code: u16, reason: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("gave up {code} {reason} ({cause})"));
    }
}

async fn next_data(ws: &mut Ws) -> Message {
    loop {
        match ws.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
            Some(Ok(Message::Close(f))) => panic!("unexpected close {f:?}"),
            Some(Ok(_)) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Reads the client's close frame and checks its code and reason.
async fn expect_close(client: &mut Ws, code: u16, reason: &str) {
    let close = next_close(client).await.unwrap();
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (code, reason)
    );
}

fn spawn_relay(
    c_leg: RelayLeg,
    s_leg: RelayLeg,
    f: Fake,
    cfg: RelayConfig,
) -> tokio::task::JoinHandle<(Outcome, u64)> {
    spawn_counted(c_leg, s_leg, f, cfg, Arc::new(Counters::default()))
}

fn spawn_counted(
    c_leg: RelayLeg,
    s_leg: RelayLeg,
    f: Fake,
    cfg: RelayConfig,
    counters: Arc<Counters>,
) -> tokio::task::JoinHandle<(Outcome, u64)> {
    tokio::spawn(async move {
        let token = CancellationToken::new();
        let o = relay_with_failover(c_leg, s_leg, &counters, &cfg, &token, f).await;
        (o, counters.messages_in.load(Ordering::Relaxed))
    })
}

/// Kills the first instance (`how`), sends numbered messages while the second one is
/// still handshaking, and checks they all arrive there in order, followed by live traffic.
async fn moves_to_the_second_instance(kill: impl FnOnce(Ws) -> tokio::task::JoinHandle<()>) {
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, mut s1) = service_pair().await;
    let (s2_leg, mut s2) = service_pair().await;
    let (open, gate) = oneshot::channel();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let f = Fake {
        legs: vec![(Some(gate), Ok(s2_leg))],
        max: 3,
        log: Arc::clone(&log),
        started: Some(started_tx),
        ..Fake::default()
    };
    let counters = Arc::new(Counters::default());
    let relay = spawn_counted(
        c_leg,
        s1_leg,
        f,
        RelayConfig::default(),
        Arc::clone(&counters),
    );
    client.send(Message::text("0")).await.unwrap();
    assert_eq!(next_data(&mut s1).await, Message::text("0"));
    let killed = kill(s1);
    killed.await.unwrap();
    started.recv().await.unwrap();
    // The relay is now reconnecting (the gate is closed): these are buffered.
    for i in 1..=50 {
        client.send(Message::text(i.to_string())).await.unwrap();
    }
    while counters.messages_in.load(Ordering::Relaxed) < 51 {
        tokio::task::yield_now().await;
    }
    let _ = open.send(());
    for i in 1..=50 {
        assert_eq!(next_data(&mut s2).await, Message::text(i.to_string()));
    }
    client.send(Message::text("51")).await.unwrap();
    assert_eq!(next_data(&mut s2).await, Message::text("51"));
    s2.send(Message::text("from 2")).await.unwrap();
    assert_eq!(next_data(&mut client).await, Message::text("from 2"));
    client.send(Message::Close(None)).await.unwrap();
    assert_eq!(next_close(&mut s2).await, None);
    let (o, messages_in) = relay.await.unwrap();
    assert_eq!((o.closed_by, o.code), (Some(Side::Client), None));
    assert_eq!(messages_in, 52);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("switched 50 91 "), "{log:?}");
}

#[tokio::test]
async fn a_session_moves_when_its_instance_vanishes() {
    moves_to_the_second_instance(|s1| {
        tokio::spawn(async move {
            drop(s1);
        })
    })
    .await;
}

#[tokio::test]
async fn a_session_moves_when_its_instance_closes_with_1001_or_1012() {
    for code in [CloseCode::Away, CloseCode::Restart] {
        moves_to_the_second_instance(move |mut s1| {
            tokio::spawn(async move {
                s1.send(Message::Close(Some(close_frame(code, "restarting"))))
                    .await
                    .unwrap();
                // The relay answers the close of the old instance.
                while let Some(Ok(m)) = s1.next().await {
                    if m.is_close() {
                        return;
                    }
                }
                panic!("no close answer from the relay");
            })
        })
        .await;
    }
}

#[tokio::test]
async fn a_normal_close_or_failover_off_ends_the_session_as_before() {
    // 1000 from the service is not a failure: it reaches the client.
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, mut s1) = service_pair().await;
    let (s2_leg, _s2) = service_pair().await;
    let f = Fake {
        legs: vec![(None, Ok(s2_leg))],
        max: 3,
        ..Fake::default()
    };
    let relay = spawn_relay(c_leg, s1_leg, f, RelayConfig::default());
    s1.send(Message::Close(Some(close_frame(CloseCode::Normal, "done"))))
        .await
        .unwrap();
    assert_eq!(u16::from(next_close(&mut client).await.unwrap().code), 1000);
    assert_eq!(relay.await.unwrap().0.code, Some(1000));

    // No switches left (failover off): an abnormal end closes the client with 1011.
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, s1) = service_pair().await;
    let (s2_leg, _s2) = service_pair().await;
    let f = Fake {
        legs: vec![(None, Ok(s2_leg))],
        max: 0,
        ..Fake::default()
    };
    let relay = spawn_relay(c_leg, s1_leg, f, RelayConfig::default());
    drop(s1);
    expect_close(&mut client, 1011, "service connection lost").await;
    assert_eq!(relay.await.unwrap().0.code, Some(1011));
}

#[tokio::test]
async fn no_instance_left_closes_the_client_with_1013() {
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, s1) = service_pair().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let f = Fake {
        max: 3,
        log: Arc::clone(&log),
        ..Fake::default()
    };
    let relay = spawn_relay(c_leg, s1_leg, f, RelayConfig::default());
    drop(s1);
    expect_close(&mut client, 1013, "no other live instance").await;
    let (o, _) = relay.await.unwrap();
    // Issue 14 item 11: the gateway sent the 1013, not the service.
    assert_eq!((o.closed_by, o.code), (None, Some(1013)));
    assert!(log.lock().unwrap()[0].starts_with("gave up 1013"));
}

#[tokio::test(start_paused = true)]
async fn no_instance_accepting_before_the_deadline_closes_with_1011() {
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, s1) = service_pair().await;
    let (s2_leg, _s2) = service_pair().await;
    let (_never, gate) = oneshot::channel();
    let f = Fake {
        legs: vec![(Some(gate), Ok(s2_leg))],
        max: 3,
        ..Fake::default()
    };
    let cfg = RelayConfig {
        failover_deadline: Duration::from_secs(10),
        ..RelayConfig::default()
    };
    let started = tokio::time::Instant::now();
    let relay = spawn_relay(c_leg, s1_leg, f, cfg);
    drop(s1);
    let close = next_close(&mut client).await.unwrap();
    assert_eq!(u16::from(close.code), 1011);
    assert!(close.reason.contains("within 10s"), "{}", close.reason);
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(relay.await.unwrap().0.code, Some(1011));
}

/// Sends `count` messages of `size` bytes while the session reconnects (the new instance
/// never answers) with a failover buffer of `budget` bytes; the client must get 1011.
async fn overfill_the_failover_buffer(budget: usize, size: usize, count: usize) {
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, s1) = service_pair().await;
    let (s2_leg, _s2) = service_pair().await;
    let (_never, gate) = oneshot::channel();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let f = Fake {
        legs: vec![(Some(gate), Ok(s2_leg))],
        max: 3,
        started: Some(started_tx),
        ..Fake::default()
    };
    let cfg = RelayConfig {
        failover_buffer_bytes: budget,
        ..RelayConfig::default()
    };
    let relay = spawn_relay(c_leg, s1_leg, f, cfg);
    drop(s1);
    started.recv().await.unwrap();
    for _ in 0..count {
        client.send(Message::binary(vec![7u8; size])).await.unwrap();
    }
    expect_close(
        &mut client,
        1011,
        &format!("failover buffer of {budget} bytes full"),
    )
    .await;
    assert_eq!(relay.await.unwrap().0.code, Some(1011));
}

#[tokio::test]
async fn a_full_failover_buffer_closes_with_1011() {
    // 10 × 100 bytes (and their overhead) fit; the 11th does not.
    overfill_the_failover_buffer(10 * (100 + HELD_MESSAGE_OVERHEAD), 100, 11).await;
}

/// Issue 14 item 3: empty messages count too, so the budget caps the message count.
#[tokio::test]
async fn empty_messages_fill_the_failover_buffer_too() {
    overfill_the_failover_buffer(1000, 0, 1000 / HELD_MESSAGE_OVERHEAD + 1).await;
}

/// Issue 14 item 3: a held message owns an allocation of its own, not a slice of the
/// read chunk it arrived in.
#[test]
fn a_held_message_does_not_pin_its_read_chunk() {
    let mut chunk = bytes::BytesMut::with_capacity(8192);
    chunk.extend_from_slice(&[1u8; 8192]);
    let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + 8192;
    let small = chunk.split_to(10).freeze();
    let text =
        tokio_tungstenite::tungstenite::Utf8Bytes::try_from(chunk.split_to(5).freeze()).unwrap();
    for (m, p) in [
        (held(Message::Binary(small)), 0usize),
        (held(Message::Text(text)), 1),
    ] {
        let ptr = match &m {
            Message::Binary(b) => b.as_ptr() as usize,
            Message::Text(t) => t.as_str().as_ptr() as usize,
            _ => unreachable!(),
        };
        assert!(
            !range.contains(&ptr),
            "message {p} still points into the chunk"
        );
    }
}

#[tokio::test]
async fn the_switch_limit_is_respected() {
    let (c_leg, mut client) = client_pair().await;
    let (s1_leg, s1) = service_pair().await;
    let (s2_leg, s2) = service_pair().await;
    let (s3_leg, _s3) = service_pair().await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let f = Fake {
        legs: vec![(None, Ok(s2_leg)), (None, Ok(s3_leg))],
        max: 1,
        started: Some(started_tx),
        ..Fake::default()
    };
    let relay = spawn_relay(c_leg, s1_leg, f, RelayConfig::default());
    drop(s1);
    started.recv().await.unwrap();
    client.send(Message::text("x")).await.unwrap();
    let mut s2 = s2;
    assert_eq!(next_data(&mut s2).await, Message::text("x"));
    drop(s2);
    assert_eq!(u16::from(next_close(&mut client).await.unwrap().code), 1011);
    relay.await.unwrap();
}
