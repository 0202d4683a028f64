//! The two-way frame relay between the client leg and the service (upstream) leg.
//!
//! Generic over `Sink<Message> + Stream<Item = Result<Message>>`, so it runs on any WebSocket
//! stream (tests drive it over in-memory duplex pipes). Both directions are pumped
//! concurrently inside the session's task, so a peer that is slow to read back-pressures only
//! its own direction (no proxy deadlock with echoing services).
//!
//! Rules (RFC 6455):
//! - text and binary messages are forwarded as they are (payloads are reference-counted
//!   `Bytes`, never copied or re-encoded); writes are batched and flushed when the reading
//!   side has nothing more ready;
//! - pings are answered by the relay (tungstenite replies with the pong) and also forwarded;
//!   pongs are hop-by-hop and not forwarded;
//! - a close frame is forwarded with its code and reason (a close without a code stays one);
//!   the relay then waits up to `close_timeout` for the other side's answer;
//! - an abnormal end of one leg (EOF or reset without a close frame, I/O error) closes the
//!   other leg: the client with 1011 when the service went away, the service with 1001 when
//!   the client went away. 1005, 1006 and 1015 are never sent;
//! - a protocol violation closes the offending leg with 1002 (1007 for invalid UTF-8, 1009 for
//!   a message over the size limit) and the other leg with 1011 (1009 for size);
//! - both legs always end together: when this function returns, both sinks were closed (or
//!   failed) and the caller drops both streams.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::close::close_frame;
use crate::sessions::Counters;

/// Which leg of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The WebSocket client (browser, app) connected to wsrelay.
    Client,
    /// The service instance wsrelay connected to.
    Service,
}

impl Side {
    /// `"client"` or `"service"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Service => "service",
        }
    }
}

/// How a relayed session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The side whose action ended the session (`None` for shutdown/relay-initiated ends).
    pub closed_by: Option<Side>,
    /// The close code that ended the session as sent to the other side (`None`: a close
    /// frame without a code, or none could be sent).
    pub code: Option<u16>,
    /// The close reason, or a description of the error.
    pub reason: String,
}

/// Settings of one relay run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Time to wait for the other side's close answer, and to flush closes (per leg).
    pub close_timeout: Duration,
}

/// How one direction stopped.
enum End {
    /// The source sent a close frame.
    Close(Option<CloseFrame>),
    /// The source ended without a close frame, or its transport failed.
    Gone(String),
    /// The source violated the protocol; close it with this code.
    Violation(CloseCode, String),
    /// Writing to the destination failed: the destination is gone.
    DestGone(String),
}

fn classify_read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => End::Violation(
            CloseCode::Size,
            format!("message of {size} bytes exceeds the limit of {max_size}"),
        ),
        WsError::Capacity(c) => End::Violation(CloseCode::Size, c.to_string()),
        WsError::Utf8(_) => {
            End::Violation(CloseCode::Invalid, "invalid UTF-8 in a text message".into())
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            End::Gone("connection ended without a close frame".into())
        }
        WsError::Protocol(p) => End::Violation(CloseCode::Protocol, p.to_string()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => End::Gone("connection closed".into()),
        other => End::Gone(other.to_string()),
    }
}

/// Pumps messages from `rx` to `tx` until the source closes, fails, or the sink fails.
async fn pump<R, T>(
    rx: &mut R,
    tx: &mut T,
    messages: &std::sync::atomic::AtomicU64,
    bytes: &std::sync::atomic::AtomicU64,
) -> End
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
    T: Sink<Message, Error = WsError> + Unpin,
{
    let mut unflushed = false;
    loop {
        // Take what is ready without waiting; flush before we would wait.
        let next = match rx.next().now_or_never() {
            Some(item) => item,
            None => {
                if unflushed {
                    if let Err(e) = tx.flush().await {
                        return End::DestGone(e.to_string());
                    }
                    unflushed = false;
                }
                rx.next().await
            }
        };
        let msg = match next {
            None => return End::Gone("connection ended without a close frame".into()),
            Some(Err(e)) => return classify_read_error(e),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                messages.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
            }
            Message::Ping(_) => {}
            Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(frame) => {
                if unflushed {
                    let _ = tx.flush().await;
                }
                return End::Close(frame);
            }
        }
        if let Err(e) = tx.feed(msg).await {
            return End::DestGone(e.to_string());
        }
        unflushed = true;
    }
}

/// Sends a close frame (if `frame` is `Some`, or a codeless close if `None` is given with
/// `send_codeless`) and flushes, bounded by `limit`. Errors are ignored: the leg is ending.
async fn send_close<T>(tx: &mut T, frame: Option<CloseFrame>, limit: Duration)
where
    T: Sink<Message, Error = WsError> + Unpin,
{
    let _ = tokio::time::timeout(limit, async {
        let _ = tx.send(Message::Close(frame)).await;
        let _ = tx.close().await;
    })
    .await;
}

/// Reads (and discards) from `rx` until its close answer or end, bounded by `limit`.
async fn await_close<R>(rx: &mut R, limit: Duration)
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let _ = tokio::time::timeout(limit, async {
        while let Some(Ok(m)) = rx.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

/// Relays between `client` and `service` until the session ends; returns how it ended.
///
/// `shutdown` ends the session with 1001 "Going Away" on both legs. Counters are updated as
/// messages pass (`*_in`: client → service, `*_out`: service → client).
pub async fn relay<C, S>(
    client: C,
    service: S,
    counters: &Counters,
    cfg: &RelayConfig,
    shutdown: &CancellationToken,
) -> Outcome
where
    C: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
{
    let (mut c_tx, mut c_rx) = client.split();
    let (mut s_tx, mut s_rx) = service.split();
    let limit = cfg.close_timeout;

    let first = {
        let up = pump(
            &mut c_rx,
            &mut s_tx,
            &counters.messages_in,
            &counters.bytes_in,
        );
        let down = pump(
            &mut s_rx,
            &mut c_tx,
            &counters.messages_out,
            &counters.bytes_out,
        );
        tokio::select! {
            e = up => Some((Side::Client, e)),
            e = down => Some((Side::Service, e)),
            () = shutdown.cancelled() => None,
        }
    };

    let Some((side, end)) = first else {
        let f = close_frame(CloseCode::Away, "gateway shutting down");
        tokio::join!(
            async {
                send_close(&mut c_tx, Some(f.clone()), limit).await;
                await_close(&mut c_rx, limit).await;
            },
            async {
                send_close(&mut s_tx, Some(f.clone()), limit).await;
                await_close(&mut s_rx, limit).await;
            }
        );
        return Outcome {
            closed_by: None,
            code: Some(1001),
            reason: "gateway shutting down".into(),
        };
    };

    // `src` is the leg whose event ended the session, `dst` the other one.
    macro_rules! finish {
        ($src_tx:expr, $src_rx:expr, $dst_tx:expr, $dst_rx:expr) => {{
            match end {
                End::Close(frame) => {
                    // Forward the close; tungstenite already answered the source. Wait for the
                    // destination's answer, then flush the source's answer.
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let reason = frame
                        .as_ref()
                        .map(|f| f.reason.to_string())
                        .unwrap_or_default();
                    tokio::join!(
                        async {
                            send_close($dst_tx, frame, limit).await;
                            await_close($dst_rx, limit).await;
                        },
                        send_close_answer($src_tx, limit)
                    );
                    Outcome {
                        closed_by: Some(side),
                        code,
                        reason,
                    }
                }
                End::Gone(cause) => {
                    let f = match side {
                        Side::Service => close_frame(CloseCode::Error, "service connection lost"),
                        Side::Client => close_frame(CloseCode::Away, "client connection lost"),
                    };
                    let code = u16::from(f.code);
                    send_close($dst_tx, Some(f), limit).await;
                    await_close($dst_rx, limit).await;
                    Outcome {
                        closed_by: Some(side),
                        code: Some(code),
                        reason: cause,
                    }
                }
                End::Violation(code, cause) => {
                    let other = if code == CloseCode::Size {
                        close_frame(
                            CloseCode::Size,
                            &format!("{} sent a message over the size limit", side.as_str()),
                        )
                    } else {
                        close_frame(
                            CloseCode::Error,
                            &format!("{} protocol error", side.as_str()),
                        )
                    };
                    tokio::join!(
                        async {
                            send_close($src_tx, Some(close_frame(code, &cause)), limit).await;
                            await_close($src_rx, limit).await;
                        },
                        async {
                            send_close($dst_tx, Some(other), limit).await;
                            await_close($dst_rx, limit).await;
                        }
                    );
                    Outcome {
                        closed_by: Some(side),
                        code: Some(u16::from(code)),
                        reason: cause,
                    }
                }
                End::DestGone(cause) => {
                    // The destination leg broke while we wrote to it: end the source leg.
                    let f = match side {
                        Side::Client => close_frame(CloseCode::Error, "service connection lost"),
                        Side::Service => close_frame(CloseCode::Away, "client connection lost"),
                    };
                    let code = u16::from(f.code);
                    send_close($src_tx, Some(f), limit).await;
                    await_close($src_rx, limit).await;
                    let other = match side {
                        Side::Client => Side::Service,
                        Side::Service => Side::Client,
                    };
                    Outcome {
                        closed_by: Some(other),
                        code: Some(code),
                        reason: cause,
                    }
                }
            }
        }};
    }

    match side {
        Side::Client => finish!(&mut c_tx, &mut c_rx, &mut s_tx, &mut s_rx),
        Side::Service => finish!(&mut s_tx, &mut s_rx, &mut c_tx, &mut c_rx),
    }
}

/// Flushes the close answer tungstenite queued for a leg that sent a close, and shuts the
/// leg's write side, bounded by `limit`.
async fn send_close_answer<T>(tx: &mut T, limit: Duration)
where
    T: Sink<Message, Error = WsError> + Unpin,
{
    let _ = tokio::time::timeout(limit, tx.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::WebSocketStream;

    type Ws = WebSocketStream<DuplexStream>;

    /// Returns (peer client, relay's client leg, relay's service leg, peer service).
    async fn legs(max: usize) -> (Ws, Ws, Ws, Ws) {
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let (a, b) = tokio::io::duplex(1 << 16);
        let (c, d) = tokio::io::duplex(1 << 16);
        (
            WebSocketStream::from_raw_socket(a, Role::Client, None).await,
            WebSocketStream::from_raw_socket(b, Role::Server, Some(cfg)).await,
            WebSocketStream::from_raw_socket(c, Role::Client, Some(cfg)).await,
            WebSocketStream::from_raw_socket(d, Role::Server, None).await,
        )
    }

    fn cfg() -> RelayConfig {
        RelayConfig {
            close_timeout: Duration::from_secs(5),
        }
    }

    async fn next_close(ws: &mut Ws) -> Option<CloseFrame> {
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
            tokio::spawn(
                async move { relay(c_leg, s_leg, &Counters::default(), &cfg(), &t2).await },
            );
        token.cancel();
        assert_eq!(u16::from(next_close(&mut client).await.unwrap().code), 1001);
        assert_eq!(
            u16::from(next_close(&mut service).await.unwrap().code),
            1001
        );
        assert_eq!(relay.await.unwrap().code, Some(1001));
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
}
