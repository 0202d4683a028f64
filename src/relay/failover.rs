//! Failover delivery: keeping the client leg open while a new service leg is opened, with
//! the client's messages held and delivered first (issue 6).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::close::{close_frame, violation, Ending};

use super::*;

/// Bytes counted for each message held in the failover buffer besides its payload: its queue
/// slot and its allocation. So the `failover.buffer` budget also caps the message count
/// (1 MiB holds at most 16,384 messages, even empty ones).
pub const HELD_MESSAGE_OVERHEAD: usize = 64;

/// A client message as the failover buffer holds it: its payload copied into an allocation of
/// its own, so a small message does not keep the leg's whole read chunk (8 KiB or more) alive
/// while it waits (issue 14 item 3).
pub(super) fn held(m: Message) -> Message {
    match m {
        Message::Text(t) => Message::Text(t.as_str().to_owned().into()),
        Message::Binary(b) => Message::Binary(bytes::Bytes::copy_from_slice(&b)),
        Message::Frame(f) => Message::Frame(
            tokio_tungstenite::tungstenite::protocol::frame::Frame::from_payload(
                f.header().clone(),
                bytes::Bytes::copy_from_slice(f.payload()),
            ),
        ),
        other => other,
    }
}

/// Why no replacement service leg could be opened (see [`Reconnect::reconnect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The close code for the client: 1013 Try Again Later when no live instance exists,
    /// 1011 when instances exist but none accepted.
    pub code: CloseCode,
    /// The close reason (at most 123 bytes are sent).
    pub reason: String,
}

impl From<Ending<'_>> for Refused {
    /// The code and reason of `ending` (from the one table, [`crate::close::Ending`]).
    fn from(ending: Ending<'_>) -> Refused {
        Refused {
            code: ending.code(),
            reason: ending.reason().into_owned(),
        }
    }
}

/// Session failover (issue 6): opens a replacement service leg when the current one ends
/// abnormally, while the relay keeps the client leg open and buffers its messages.
///
/// The relay calls [`may_switch`](Reconnect::may_switch) when the service leg ends with a
/// reset/EOF without a close frame, a transport (TLS) error, a failed write, a keepalive
/// timeout, or a close with 1001 Going Away / 1012 Service Restart; if it answers `true`, the
/// relay calls [`reconnect`](Reconnect::reconnect) (bounded by
/// [`RelayConfig::failover_deadline`]) and then [`switched`](Reconnect::switched) or
/// [`gave_up`](Reconnect::gave_up).
pub trait Reconnect<S> {
    /// Whether this session may switch to another instance now (failover on for its route,
    /// and switches left).
    fn may_switch(&self) -> bool;
    /// Opens a new service leg on another live instance (never the ones that failed for this
    /// session), with the same path, query, headers and subprotocol.
    ///
    /// # Errors
    /// [`Refused`] when no instance exists or none accepted.
    fn reconnect(&mut self) -> impl std::future::Future<Output = Result<S, Refused>> + Send;
    /// The session now runs on the leg the last `reconnect` returned; `cause` is why the old
    /// one ended, `buffered_messages` / `buffered_bytes` what was held and delivered first.
    fn switched(&mut self, cause: &str, buffered_messages: usize, buffered_bytes: usize);
    /// The failover failed and the client is closed with `code` (after `cause`).
    fn gave_up(&mut self, cause: &str, code: u16, reason: &str);
}

/// No failover: the session ends when its service leg does (`failover.mode = "close"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFailover;

impl<S: Send> Reconnect<S> for NoFailover {
    fn may_switch(&self) -> bool {
        false
    }

    async fn reconnect(&mut self) -> Result<S, Refused> {
        Err(Ending::FailoverFailed("failover is off").into())
    }

    fn switched(&mut self, _: &str, _: usize, _: usize) {}

    fn gave_up(&mut self, _: &str, _: u16, _: &str) {}
}

/// Why the service leg ended, if that end allows a failover: a reset/EOF without a close
/// frame or a transport error (`Gone` from the service), a failed write or a keepalive
/// timeout towards the service (`DestGone` of the client's pump), or a close with 1001 Going
/// Away / 1012 Service Restart (issue 6).
pub(super) fn failover_cause(side: Side, end: &End) -> Option<String> {
    match (side, end) {
        (Side::Service, End::Gone(cause)) | (Side::Client, End::DestGone(cause)) => {
            Some(cause.clone())
        }
        (Side::Service, End::Close(Some(f)))
            if matches!(f.code, CloseCode::Away | CloseCode::Restart) =>
        {
            Some(if f.reason.is_empty() {
                format!("service closed with {}", u16::from(f.code))
            } else {
                format!(
                    "service closed with {} {:?}",
                    u16::from(f.code),
                    f.reason.as_str()
                )
            })
        }
        _ => None,
    }
}

/// Why a failover stopped without a new leg.
pub(super) enum Stop {
    /// No instance took the session: close the client with this.
    Refused(Refused),
    /// The client closed or went away meanwhile.
    Client(Outcome),
}

/// How a failover ended.
pub(super) enum Failover<S> {
    /// A new service leg, with the client messages to deliver to it first.
    Switched(S, std::collections::VecDeque<Message>, usize),
    /// The session is over.
    Ended(Outcome),
}

/// Keeps the client leg open while `f` opens a new service leg: client data messages are
/// buffered in order (up to `cfg.failover_buffer_bytes`), pings are answered, a close or
/// the end of the client ends the session. The old service leg (`old`) gets its close answer
/// flushed (when it sent a close) and is dropped meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fail_over<CT, CR, S, F>(
    c_tx: &mut CT,
    c_rx: &mut CR,
    old: (Half<S>, Half<S>),
    first_held: Option<Message>,
    answer_old: bool,
    cause: &str,
    f: &mut F,
    counters: &Counters,
    cfg: &RelayConfig,
    shutdown: &CancellationToken,
) -> Failover<S>
where
    CT: Sink<Message, Error = WsError> + Unpin,
    CR: Stream<Item = Result<Message, WsError>> + Unpin,
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
    F: Reconnect<S>,
{
    let limit = cfg.close_timeout;
    let (mut old_tx, old_rx) = old;
    let mut buffer = std::collections::VecDeque::new();
    // Payload bytes (reported) and what the buffer holds (checked against the budget).
    let mut buffered = 0usize;
    let mut held_bytes = 0usize;
    if let Some(m) = first_held {
        // Read before the old leg ended, not handed to it: counted here, as the others below.
        counters.messages_in.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_in
            .fetch_add(m.len() as u64, Ordering::Relaxed);
        buffered += m.len();
        held_bytes += m.len() + HELD_MESSAGE_OVERHEAD;
        buffer.push_back(held(m));
    }
    let stop = {
        // The old leg's close answer is flushed while the new leg connects; it is abandoned
        // (the connection dropped) if the new leg is ready first.
        let release_old = async move {
            if answer_old {
                send_close_answer(&mut old_tx, limit).await;
            }
            drop(old_tx);
            drop(old_rx);
        };
        let reconnect = f.reconnect();
        let deadline = tokio::time::sleep(cfg.failover_deadline);
        tokio::pin!(release_old, reconnect, deadline);
        let mut released = false;
        loop {
            tokio::select! {
                () = &mut release_old, if !released => released = true,
                r = &mut reconnect => break r.map_err(Stop::Refused),
                () = &mut deadline => break Err(Stop::Refused(Ending::FailoverFailed(&format!(
                    "no instance accepted the session within {:?}",
                    cfg.failover_deadline
                )).into())),
                () = shutdown.cancelled() => break Err(Stop::Refused(Ending::Shutdown.into())),
                m = c_rx.next() => match m {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_) | Message::Frame(_)))) => {
                        counters.messages_in.fetch_add(1, Ordering::Relaxed);
                        counters.bytes_in.fetch_add(m.len() as u64, Ordering::Relaxed);
                        buffered += m.len();
                        held_bytes += m.len() + HELD_MESSAGE_OVERHEAD;
                        if held_bytes > cfg.failover_buffer_bytes {
                            break Err(Stop::Refused(Ending::FailoverFailed(&format!(
                                "failover buffer of {} bytes full",
                                cfg.failover_buffer_bytes
                            )).into()));
                        }
                        buffer.push_back(held(m));
                    }
                    // Pings are answered by the leg; pongs are hop-by-hop.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        // The client leaves while we reconnect: answer it, end the session.
                        send_close_answer(c_tx, limit).await;
                        break Err(Stop::Client(Outcome {
                            closed_by: Some(Side::Client),
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        }));
                    }
                    Some(Err(e)) => {
                        let outcome = match classify_read_error(e) {
                            End::Violation(code, why) => {
                                let f = violation(code, &why).frame();
                                close_leg_ref(c_tx, c_rx, Some(f), limit).await;
                                Outcome {
                                    closed_by: Some(Side::Client),
                                    code: Some(u16::from(code)),
                                    reason: why,
                                }
                            }
                            other => Outcome {
                                closed_by: Some(Side::Client),
                                code: None,
                                reason: end_cause(other),
                            },
                        };
                        break Err(Stop::Client(outcome));
                    }
                    None => break Err(Stop::Client(Outcome {
                        closed_by: Some(Side::Client),
                        code: None,
                        reason: "connection ended without a close frame".into(),
                    })),
                },
            }
        }
    };
    match stop {
        Ok(leg) => Failover::Switched(leg, buffer, buffered),
        Err(Stop::Client(outcome)) => {
            f.gave_up(
                cause,
                outcome.code.unwrap_or(1005),
                "the client left during the failover",
            );
            Failover::Ended(outcome)
        }
        Err(Stop::Refused(refused)) => {
            f.gave_up(cause, u16::from(refused.code), &refused.reason);
            close_leg_ref(
                c_tx,
                c_rx,
                Some(close_frame(refused.code, &refused.reason)),
                limit,
            )
            .await;
            // The gateway chose this close (1013 or 1011), not the service: logged
            // `closed_by="gateway"`.
            Failover::Ended(Outcome {
                closed_by: None,
                code: Some(u16::from(refused.code)),
                reason: format!("{cause}; {}", refused.reason),
            })
        }
    }
}

/// The description of an end that is not a close frame.
pub(super) fn end_cause(end: End) -> String {
    match end {
        End::Close(f) => f.map(|f| f.reason.to_string()).unwrap_or_default(),
        End::Gone(c) | End::Violation(_, c) | End::DestGone(c) => c,
        End::DestStuck => "not reading".into(),
    }
}

/// [`close_leg`] on borrowed halves.
pub(super) async fn close_leg_ref<T, R>(
    tx: &mut T,
    rx: &mut R,
    frame: Option<CloseFrame>,
    limit: Duration,
) where
    T: Sink<Message, Error = WsError> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    send_close(tx, frame, limit).await;
    await_close(rx, limit).await;
}

/// Sends the buffered client messages to a new service leg, in order. On a failed write,
/// the unsent messages (the failed one first) stay in `buffer`.
pub(super) async fn deliver<T>(
    tx: &mut T,
    buffer: &mut std::collections::VecDeque<Message>,
    write_timeout: Duration,
) -> Result<(), End>
where
    T: Sink<Message, Error = WsError> + Unpin,
{
    while let Some(m) = buffer.pop_front() {
        match tokio::time::timeout(write_timeout, tx.feed(m.clone())).await {
            Err(_) => {
                buffer.push_front(m);
                return Err(End::DestGone("new instance is not reading".into()));
            }
            Ok(Err(e)) => {
                buffer.push_front(m);
                return Err(End::DestGone(e.to_string()));
            }
            Ok(Ok(())) => {}
        }
    }
    match tokio::time::timeout(write_timeout, tx.flush()).await {
        Err(_) => Err(End::DestGone("new instance is not reading".into())),
        Ok(Err(e)) => Err(End::DestGone(e.to_string())),
        Ok(Ok(())) => Ok(()),
    }
}
