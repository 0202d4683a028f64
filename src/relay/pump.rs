//! One direction of a session: read from one leg, hand to the other, under backpressure,
//! with the write timeout and keepalive pings.

use std::future::Future;
use std::sync::atomic::Ordering;

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::ws::leg::ReadProgress;

use super::*;

/// How one direction stopped.
pub(super) enum End {
    /// The source sent a close frame.
    Close(Option<CloseFrame>),
    /// The source ended without a close frame, or its transport failed.
    Gone(String),
    /// The source violated the protocol; close it with this code.
    Violation(CloseCode, String),
    /// Writing to the destination failed: the destination is gone.
    DestGone(String),
    /// A write to the destination did not finish within the write timeout: it is not reading.
    DestStuck,
}

pub(super) fn classify_read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => End::Violation(
            CloseCode::Size,
            format!("message of {size} bytes exceeds the limit of {max_size}"),
        ),
        WsError::Capacity(c) => End::Violation(CloseCode::Size, c.to_string()),
        WsError::Utf8(cause) if cause.starts_with(crate::ws::leg::INVALID_DEFLATE) => {
            End::Violation(CloseCode::Invalid, crate::ws::leg::INVALID_DEFLATE.into())
        }
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
///
/// Everything ready is read and fed before one flush (writes are batched); the destination
/// is flushed before the pump waits. A write or flush that waits longer than `write_timeout`
/// is [`End::DestStuck`]. With keepalive, the destination is pinged every interval while the
/// source is quiet, and counts as gone when not heard from for `interval + timeout`.
#[allow(clippy::too_many_arguments)]
pub(super) fn pump<'a, R, T>(
    rx: &'a mut R,
    tx: &'a mut T,
    messages: &'a std::sync::atomic::AtomicU64,
    bytes: &'a std::sync::atomic::AtomicU64,
    activity: &'a Activity,
    cfg: &'a RelayConfig,
    src: &'a Heard,
    dst: &'a Heard,
    step: &'a mut Step,
) -> Pump<'a, R, T> {
    let tick = cfg.keepalive.map(|k| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + k.interval, k.interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    Pump {
        rx,
        tx,
        messages,
        bytes,
        activity,
        cfg,
        src,
        dst,
        tick,
        step,
        unflushed: false,
        timer: None,
    }
}

/// What a pump does next.
pub(super) enum Step {
    /// Read from the source.
    Read,
    /// Hand this message to the destination (it was not ready).
    Write(Message),
    /// The source closed with this frame: a last flush, then the pump ends.
    Close(Option<CloseFrame>),
}

/// One direction of a session ([`pump`]), written as a plain state machine: an idle session
/// carries both of its pumps, so their state is kept to a few words (issue 7).
pub(super) struct Pump<'a, R, T> {
    rx: &'a mut R,
    tx: &'a mut T,
    messages: &'a std::sync::atomic::AtomicU64,
    bytes: &'a std::sync::atomic::AtomicU64,
    /// When data last passed (both directions).
    activity: &'a Activity,
    cfg: &'a RelayConfig,
    /// When the source was last heard from (this pump updates it).
    src: &'a Heard,
    /// When the destination was last heard from (the other pump updates it); keepalive pings
    /// go to the destination.
    dst: &'a Heard,
    tick: Option<tokio::time::Interval>,
    /// Kept by the relay, so a message read but not yet handed over outlives the pump: it is
    /// delivered when the session ends or moves (issue 14 item 5).
    step: &'a mut Step,
    unflushed: bool,
    /// The write deadline, armed (boxed) only while the destination makes the pump wait.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<R, T> Pump<'_, R, T> {
    /// The destination makes the pump wait: arms the write deadline, or reports that it
    /// passed.
    fn wait_for_destination(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let limit = self.cfg.write_timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<R, T> Future for Pump<'_, R, T>
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
    T: Sink<Message, Error = WsError> + ReadProgress + Unpin,
{
    type Output = End;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<End> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            match std::mem::replace(this.step, Step::Read) {
                Step::Read => {
                    // Read only what the destination can take: while it holds a backlog the
                    // next message stays in the source's socket, so a stalled session holds at
                    // most one message besides the socket buffers (issue 14 item 4).
                    match std::pin::Pin::new(&mut *this.tx).poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            this.timer = None;
                            this.src.set_unread(false);
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(End::DestGone(e.to_string())),
                        Poll::Pending => {
                            this.src.set_unread(true);
                            if this.wait_for_destination(cx) {
                                return Poll::Ready(End::DestStuck);
                            }
                            return Poll::Pending;
                        }
                    }
                }
                Step::Write(msg) => match std::pin::Pin::new(&mut *this.tx).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        this.timer = None;
                        // Counted once handed to the destination leg, not when read: a message
                        // a pump still held when the session ended was not relayed (issue 14
                        // item 5). What a leg has queued is flushed before its close frame.
                        // A `Frame` is a compressed data message handed on as it is
                        // (permessage-deflate on both legs).
                        let data = matches!(
                            msg,
                            Message::Text(_) | Message::Binary(_) | Message::Frame(_)
                        );
                        let len = msg.len() as u64;
                        if let Err(e) = std::pin::Pin::new(&mut *this.tx).start_send(msg) {
                            return Poll::Ready(End::DestGone(e.to_string()));
                        }
                        if data {
                            this.messages.fetch_add(1, Ordering::Relaxed);
                            this.bytes.fetch_add(len, Ordering::Relaxed);
                        }
                        this.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(End::DestGone(e.to_string())),
                    Poll::Pending => {
                        *this.step = Step::Write(msg);
                        this.src.set_unread(true);
                        if this.wait_for_destination(cx) {
                            return Poll::Ready(End::DestStuck);
                        }
                        return Poll::Pending;
                    }
                },
                Step::Close(frame) => {
                    // A last flush of what was forwarded before the close (bounded; errors do
                    // not matter any more).
                    if this.unflushed
                        && std::pin::Pin::new(&mut *this.tx)
                            .poll_flush(cx)
                            .is_pending()
                        && !this.wait_for_destination(cx)
                    {
                        *this.step = Step::Close(frame);
                        return Poll::Pending;
                    }
                    this.unflushed = false;
                    return Poll::Ready(End::Close(frame));
                }
            }
            match std::pin::Pin::new(&mut *this.rx).poll_next(cx) {
                Poll::Ready(next) => {
                    this.src.touch();
                    let msg = match next {
                        None => {
                            return Poll::Ready(End::Gone(
                                "connection ended without a close frame".into(),
                            ))
                        }
                        Some(Err(e)) => return Poll::Ready(classify_read_error(e)),
                        Some(Ok(m)) => m,
                    };
                    match msg {
                        Message::Text(_) | Message::Binary(_) | Message::Frame(_) => {
                            this.activity.touch();
                            *this.step = Step::Write(msg);
                        }
                        Message::Ping(_) => *this.step = Step::Write(msg),
                        Message::Pong(_) => {}
                        Message::Close(frame) => *this.step = Step::Close(frame),
                    }
                }
                Poll::Pending => {
                    // Nothing more to read now: flush before waiting.
                    if this.unflushed {
                        match std::pin::Pin::new(&mut *this.tx).poll_flush(cx) {
                            Poll::Ready(Ok(())) => {
                                this.unflushed = false;
                                this.timer = None;
                            }
                            Poll::Ready(Err(e)) => {
                                return Poll::Ready(End::DestGone(e.to_string()))
                            }
                            Poll::Pending => {
                                if this.wait_for_destination(cx) {
                                    return Poll::Ready(End::DestStuck);
                                }
                                return Poll::Pending;
                            }
                        }
                    }
                    if let (Some(tick), Some(k)) = (this.tick.as_mut(), this.cfg.keepalive) {
                        if tick.poll_tick(cx).is_ready() {
                            this.dst.saw_bytes(this.tx.bytes_read());
                            // A leg the other pump does not read (its destination is
                            // backed up) is not judged: its answers wait unread.
                            if this.dst.judged() && this.dst.silent_for() > k.interval + k.timeout {
                                return Poll::Ready(End::DestGone(format!(
                                    "no answer to keepalive pings for {:?}",
                                    k.interval + k.timeout
                                )));
                            }
                            *this.step = Step::Write(Message::Ping(Default::default()));
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
