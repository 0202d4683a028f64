//! Close sequencing: how a session's legs are closed once one direction ended.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// Sends a close frame (if `frame` is `Some`, or a codeless close if `None` is given with
/// `send_codeless`) and flushes, bounded by `limit`. Errors are ignored: the leg is ending.
pub(super) async fn send_close<T>(tx: &mut T, frame: Option<CloseFrame>, limit: Duration)
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
pub(super) async fn await_close<R>(rx: &mut R, limit: Duration)
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

/// Ends a leg the relay closes: sends `frame`, waits (bounded) for the answer, then drops
/// both halves, which closes the connection.
pub(super) async fn close_leg<T, R>(
    mut tx: T,
    mut rx: R,
    frame: Option<CloseFrame>,
    limit: Duration,
) where
    T: Sink<Message, Error = WsError> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    send_close(&mut tx, frame, limit).await;
    await_close(&mut rx, limit).await;
}

/// Ends the session after `side` (the source, `src`) ended it with `end`; `dst` is the
/// other leg. `to_src` is the counters of the direction towards the source and the step the
/// pump of that direction stopped at.
///
/// When the source sent a close, its answer waits (up to `limit`) until the destination has
/// answered the forwarded close: what the destination sends before its answer (and a
/// message its pump held) still reaches the source, as through a tunnel (RFC 6455 §5.5.1,
/// issue 14 item 5). Each leg is dropped (its connection closed) as soon as its own close
/// handshake is over.
pub(super) async fn finish<ST, SR, DT, DR>(
    side: Side,
    end: End,
    (mut src_tx, src_rx): (ST, SR),
    (dst_tx, dst_rx): (DT, DR),
    to_src: (
        &std::sync::atomic::AtomicU64,
        &std::sync::atomic::AtomicU64,
        Step,
    ),
    limit: Duration,
) -> Outcome
where
    ST: Sink<Message, Error = WsError> + Unpin,
    SR: Stream<Item = Result<Message, WsError>> + Unpin,
    DT: Sink<Message, Error = WsError> + Unpin,
    DR: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let other = match side {
        Side::Client => Side::Service,
        Side::Service => Side::Client,
    };
    match end {
        End::Close(frame) => {
            // Forward the close (1002 instead of a code that may not be sent, see the leg's
            // doc); until the destination answers, its data goes on to the source, then the
            // source gets its answer.
            let code = frame.as_ref().map(|f| u16::from(f.code));
            let reason = frame
                .as_ref()
                .map(|f| f.reason.to_string())
                .unwrap_or_default();
            let (messages, bytes, held) = to_src;
            let mut dst_tx = dst_tx;
            let mut dst_rx = dst_rx;
            let forward = async move {
                send_close(&mut dst_tx, frame, limit).await;
                dst_tx
            };
            let rest = async move {
                let _ = tokio::time::timeout(limit, async {
                    if let Step::Write(
                        m @ (Message::Text(_) | Message::Binary(_) | Message::Frame(_)),
                    ) = held
                    {
                        if !deliver_counted(&mut src_tx, m, messages, bytes).await {
                            return;
                        }
                    }
                    // Until the destination's close answer (or its end); its pings are
                    // answered by its leg, pongs are per hop.
                    while let Some(Ok(m)) = dst_rx.next().await {
                        if m.is_close() {
                            return;
                        }
                        if (m.is_text() || m.is_binary() || matches!(m, Message::Frame(_)))
                            && !deliver_counted(&mut src_tx, m, messages, bytes).await
                        {
                            return;
                        }
                    }
                })
                .await;
                send_close_answer(&mut src_tx, limit).await;
                drop(src_tx);
                drop(src_rx);
                dst_rx
            };
            let (dst_tx, dst_rx) = tokio::join!(forward, rest);
            drop((dst_tx, dst_rx));
            Outcome {
                closed_by: Some(side),
                code,
                reason,
            }
        }
        End::Gone(cause) => {
            drop((src_tx, src_rx));
            leg_lost(side, dst_tx, dst_rx, cause, limit).await
        }
        End::Violation(code, cause) => {
            let to_other = if code == CloseCode::Size {
                Ending::PeerTooBig(side.as_str())
            } else {
                Ending::PeerViolation(side.as_str())
            };
            tokio::join!(
                close_leg(src_tx, src_rx, Some(violation(code, &cause).frame()), limit),
                close_leg(dst_tx, dst_rx, Some(to_other.frame()), limit)
            );
            Outcome {
                closed_by: Some(side),
                code: Some(u16::from(code)),
                reason: cause,
            }
        }
        End::DestStuck => {
            // The destination does not read: a close frame would not reach it either. Drop
            // it and close the source with 1011.
            drop((dst_tx, dst_rx));
            let ending = Ending::NotReading(other.as_str());
            close_leg(src_tx, src_rx, Some(ending.frame()), limit).await;
            Outcome {
                closed_by: Some(other),
                code: Some(u16::from(ending.code())),
                reason: ending.reason().into_owned(),
            }
        }
        End::DestGone(cause) => {
            // The destination leg broke while we wrote to it: end the source leg.
            drop((dst_tx, dst_rx));
            leg_lost(other, src_tx, src_rx, cause, limit).await
        }
    }
}

/// Sends one data message to `tx` and flushes it, counting it in `messages` and `bytes` once
/// handed over; `false` when the leg failed.
pub(super) async fn deliver_counted<T>(
    tx: &mut T,
    m: Message,
    messages: &std::sync::atomic::AtomicU64,
    bytes: &std::sync::atomic::AtomicU64,
) -> bool
where
    T: Sink<Message, Error = WsError> + Unpin,
{
    let len = m.len() as u64;
    if tx.feed(m).await.is_err() {
        return false;
    }
    messages.fetch_add(1, Ordering::Relaxed);
    bytes.fetch_add(len, Ordering::Relaxed);
    tx.flush().await.is_ok()
}

/// `lost` went away without a close frame: the remaining leg gets 1011 "service connection
/// lost" (the service went away) or 1001 "client connection lost" (the client did); 1006 is
/// never sent (RFC 6455 §7.4.1).
pub(super) async fn leg_lost<T, R>(
    lost: Side,
    tx: T,
    rx: R,
    cause: String,
    limit: Duration,
) -> Outcome
where
    T: Sink<Message, Error = WsError> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let f = match lost {
        Side::Service => Ending::ServiceLost,
        Side::Client => Ending::ClientLost,
    }
    .frame();
    let code = u16::from(f.code);
    close_leg(tx, rx, Some(f), limit).await;
    Outcome {
        closed_by: Some(lost),
        code: Some(code),
        reason: cause,
    }
}

/// Flushes the close answer a leg queued when its peer sent a close (or sends a codeless
/// close if none was sent), bounded by `limit`.
pub(super) async fn send_close_answer<T>(tx: &mut T, limit: Duration)
where
    T: Sink<Message, Error = WsError> + Unpin,
{
    let _ = tokio::time::timeout(limit, tx.close()).await;
}
