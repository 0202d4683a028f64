//! The two-way frame relay between the client leg and the service (upstream) leg.
//!
//! Generic over `Sink<Message> + Stream<Item = Result<Message>>`, so it runs on any WebSocket
//! stream (tests drive it over in-memory duplex pipes). Both directions are pumped
//! concurrently inside the session's task, so a peer that is slow to read back-pressures only
//! its own direction (no proxy deadlock with echoing services).
//!
//! Rules (RFC 6455):
//! - text and binary messages are forwarded as they are (one frame per message, payloads
//!   passed as reference-counted `Bytes` until the destination leg encodes them); writes are
//!   batched and flushed when the reading side has nothing more ready;
//! - pings are answered by the leg that received them ([`super::leg::Leg`] queues the pong)
//!   and also forwarded; pongs are hop-by-hop and not forwarded;
//! - a close frame is forwarded with its code and reason (a close without a code stays one);
//!   the relay then waits up to `close_timeout` for the other side's answer;
//! - an abnormal end of one leg (EOF or reset without a close frame, I/O error) closes the
//!   other leg: the client with 1011 when the service went away, the service with 1001 when
//!   the client went away. 1005, 1006 and 1015 are never sent;
//! - a protocol violation closes the offending leg with 1002 (1007 for invalid UTF-8, 1009 for
//!   a message over the size limit) and the other leg with 1011 (1009 for size);
//! - both legs always end together: when this function returns, both legs were closed (or
//!   failed) and dropped. Each leg is dropped as soon as its own close handshake is over (or
//!   `close_timeout` ran out), so a client that answered is not held open while a slow
//!   service answers, and the other way round.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::future::Future;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::close::close_frame;
use super::leg::ReadProgress;
use crate::sessions::Counters;

/// One half of a leg split between the two pumps of a session (both run in one task).
/// Unlike futures' `StreamExt::split`, the sink half keeps no slot of its own: its
/// `poll_ready` is the leg's, so a pump reads a message only when the destination can take it
/// and a stalled session holds one message, not two (issue 14 item 4).
pub struct Half<L>(std::sync::Arc<std::sync::Mutex<L>>);

/// Splits `leg` into a sink half and a stream half (see [`Half`]).
pub fn split_leg<L>(leg: L) -> (Half<L>, Half<L>) {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(leg));
    (Half(std::sync::Arc::clone(&shared)), Half(shared))
}

impl<L> Half<L> {
    /// The leg again from its two halves; `Err` gives back `self` when `other` is a half of
    /// another leg or the leg is shared still.
    pub fn reunite(self, other: Half<L>) -> Result<L, Half<L>> {
        if !std::sync::Arc::ptr_eq(&self.0, &other.0) {
            return Err(self);
        }
        drop(other);
        match std::sync::Arc::try_unwrap(self.0) {
            Ok(m) => Ok(m.into_inner().unwrap_or_else(|p| p.into_inner())),
            Err(shared) => Err(Half(shared)),
        }
    }

    fn locked<R>(&self, f: impl FnOnce(&mut L) -> R) -> R {
        // The lock is never held across an await, and a panic inside it poisons nothing the
        // other half could misread: take the leg as it is.
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl<L: Stream + Unpin> Stream for Half<L> {
    type Item = L::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<L::Item>> {
        Half::locked(&self, |l| std::pin::Pin::new(l).poll_next(cx))
    }
}

impl<L: ReadProgress> ReadProgress for Half<L> {
    fn bytes_read(&self) -> u64 {
        Half::locked(self, |l| l.bytes_read())
    }
}

impl<L: Sink<Message> + Unpin> Sink<Message> for Half<L> {
    type Error = L::Error;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), L::Error>> {
        Half::locked(&self, |l| {
            Sink::<Message>::poll_ready(std::pin::Pin::new(l), cx)
        })
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), L::Error> {
        Half::locked(&self, |l| {
            Sink::<Message>::start_send(std::pin::Pin::new(l), item)
        })
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), L::Error>> {
        Half::locked(&self, |l| {
            Sink::<Message>::poll_flush(std::pin::Pin::new(l), cx)
        })
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), L::Error>> {
        Half::locked(&self, |l| {
            Sink::<Message>::poll_close(std::pin::Pin::new(l), cx)
        })
    }
}

/// Bytes counted for each message held in the failover buffer besides its payload: its queue
/// slot and its allocation. So the `failover.buffer` budget also caps the message count
/// (1 MiB holds at most 16,384 messages, even empty ones).
pub const HELD_MESSAGE_OVERHEAD: usize = 64;

/// A client message as the failover buffer holds it: its payload copied into an allocation of
/// its own, so a small message does not keep the leg's whole read chunk (8 KiB or more) alive
/// while it waits (issue 14 item 3).
fn held(m: Message) -> Message {
    match m {
        Message::Text(t) => Message::Text(t.as_str().to_owned().into()),
        Message::Binary(b) => Message::Binary(bytes::Bytes::copy_from_slice(&b)),
        other => other,
    }
}

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
    /// A session with no data message in either direction for this long is closed with 1000
    /// "idle timeout" on both legs (`limits.idle_timeout`, default 1 h as the reference
    /// gateway). Pings and pongs do not count as data.
    pub idle_timeout: Duration,
    /// Longest time one write (or flush) to a leg may take; a peer that does not read is
    /// dropped after it and the other leg is closed with 1011 (`limits.write_timeout`, default
    /// 60 s as the reference gateway's `asyncWriteTimeout`).
    pub write_timeout: Duration,
    /// Server-side keepalive: a ping to each leg every `interval`; a leg not heard from (any
    /// frame, the pong included) within `interval + timeout` is treated as gone
    /// (`keepalive.interval` / `keepalive.timeout`, default off).
    pub keepalive: Option<Keepalive>,
    /// Client message bytes held while a session fails over (`failover.buffer`, default
    /// 1 MiB); more ends the session with 1011.
    pub failover_buffer_bytes: usize,
    /// Time a failover has to find an instance that accepts (`failover.deadline`, default
    /// 10 s); then the client gets 1011.
    pub failover_deadline: Duration,
}

/// Keepalive ping settings (see [`RelayConfig::keepalive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings to each leg.
    pub interval: Duration,
    /// Extra time a leg has to answer before it counts as gone.
    pub timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            close_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(3600),
            write_timeout: Duration::from_secs(60),
            keepalive: None,
            failover_buffer_bytes: 1 << 20,
            failover_deadline: Duration::from_secs(10),
        }
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
        Err(Refused {
            code: CloseCode::Error,
            reason: "failover is off".into(),
        })
    }

    fn switched(&mut self, _: &str, _: usize, _: usize) {}

    fn gave_up(&mut self, _: &str, _: u16, _: &str) {}
}

/// When a leg was last heard from (any frame), in milliseconds since the relay started, and
/// whether the pump that reads it is held back by its destination (then the leg is not read,
/// so its silence says nothing, issue 14 item 2).
struct Heard {
    start: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    unread: std::sync::atomic::AtomicBool,
    /// The leg's [`ReadProgress::bytes_read`] at the last keepalive tick.
    read_seen: std::sync::atomic::AtomicU64,
}

impl Heard {
    fn new(start: tokio::time::Instant) -> Heard {
        Heard {
            start,
            last_ms: std::sync::atomic::AtomicU64::new(0),
            unread: std::sync::atomic::AtomicBool::new(false),
            read_seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Bytes arrived on the leg since the last call (its read counter moved to `read`): it
    /// counts as heard now, even if they are the middle of a frame that is not complete yet
    /// (a peer sending a long message cannot answer a ping before it ends).
    fn saw_bytes(&self, read: u64) {
        if self.read_seen.swap(read, Ordering::Relaxed) != read {
            self.touch();
        }
    }

    /// The pump reading this leg stops (`true`) or starts again (`false`) because of its
    /// destination's backpressure. Starting again counts as hearing the leg: it was not
    /// listened to meanwhile.
    fn set_unread(&self, unread: bool) {
        // A load first: the common case (being read, as before) writes nothing per message.
        if self.unread.load(Ordering::Relaxed) != unread {
            self.unread.store(unread, Ordering::Relaxed);
            if !unread {
                self.touch();
            }
        }
    }

    /// Whether the leg can be judged by its silence (it is being read).
    fn judged(&self) -> bool {
        !self.unread.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        tokio::time::Instant::now().saturating_duration_since(last)
    }
}

/// Time of the last data message, in milliseconds since the relay started (shared by both
/// directions of one session).
struct Activity {
    start: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no data has passed for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
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
    /// A write to the destination did not finish within the write timeout: it is not reading.
    DestStuck,
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
///
/// Everything ready is read and fed before one flush (writes are batched); the destination
/// is flushed before the pump waits. A write or flush that waits longer than `write_timeout`
/// is [`End::DestStuck`]. With keepalive, the destination is pinged every interval while the
/// source is quiet, and counts as gone when not heard from for `interval + timeout`.
#[allow(clippy::too_many_arguments)]
fn pump<'a, R, T>(
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
enum Step {
    /// Read from the source.
    Read,
    /// Hand this message to the destination (it was not ready).
    Write(Message),
    /// The source closed with this frame: a last flush, then the pump ends.
    Close(Option<CloseFrame>),
}

/// One direction of a session ([`pump`]), written as a plain state machine: an idle session
/// carries both of its pumps, so their state is kept to a few words (issue 7).
struct Pump<'a, R, T> {
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
                        let data = matches!(msg, Message::Text(_) | Message::Binary(_));
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
                        Message::Text(_) | Message::Binary(_) => {
                            this.activity.touch();
                            *this.step = Step::Write(msg);
                        }
                        Message::Ping(_) => *this.step = Step::Write(msg),
                        Message::Pong(_) | Message::Frame(_) => {}
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
/// messages pass (`*_in`: client → service, `*_out`: service → client). Without failover;
/// see [`relay_with_failover`].
pub fn relay<'a, C, S>(
    client: C,
    service: S,
    counters: &'a Counters,
    cfg: &'a RelayConfig,
    shutdown: &'a CancellationToken,
) -> impl std::future::Future<Output = Outcome> + 'a
where
    C: Sink<Message, Error = WsError>
        + ReadProgress
        + Stream<Item = Result<Message, WsError>>
        + Unpin
        + 'a,
    S: Sink<Message, Error = WsError>
        + ReadProgress
        + Stream<Item = Result<Message, WsError>>
        + Unpin
        + Send
        + 'a,
{
    relay_with_failover(client, service, counters, cfg, shutdown, NoFailover)
}

/// Why the service leg ended, if that end allows a failover: a reset/EOF without a close
/// frame or a transport error (`Gone` from the service), a failed write or a keepalive
/// timeout towards the service (`DestGone` of the client's pump), or a close with 1001 Going
/// Away / 1012 Service Restart (issue 6).
fn failover_cause(side: Side, end: &End) -> Option<String> {
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
enum Stop {
    /// No instance took the session: close the client with this.
    Refused(Refused),
    /// The client closed or went away meanwhile.
    Client(Outcome),
}

/// How a failover ended.
enum Failover<S> {
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
async fn fail_over<CT, CR, S, F>(
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
                () = &mut deadline => break Err(Stop::Refused(Refused {
                    code: CloseCode::Error,
                    reason: format!(
                        "no instance accepted the session within {:?}",
                        cfg.failover_deadline
                    ),
                })),
                () = shutdown.cancelled() => break Err(Stop::Refused(Refused {
                    code: CloseCode::Away,
                    reason: "gateway shutting down".into(),
                })),
                m = c_rx.next() => match m {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        counters.messages_in.fetch_add(1, Ordering::Relaxed);
                        counters.bytes_in.fetch_add(m.len() as u64, Ordering::Relaxed);
                        buffered += m.len();
                        held_bytes += m.len() + HELD_MESSAGE_OVERHEAD;
                        if held_bytes > cfg.failover_buffer_bytes {
                            break Err(Stop::Refused(Refused {
                                code: CloseCode::Error,
                                reason: format!(
                                    "failover buffer of {} bytes full",
                                    cfg.failover_buffer_bytes
                                ),
                            }));
                        }
                        buffer.push_back(held(m));
                    }
                    // Pings are answered by the leg; pongs are hop-by-hop.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
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
                                let f = close_frame(code, &why);
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
fn end_cause(end: End) -> String {
    match end {
        End::Close(f) => f.map(|f| f.reason.to_string()).unwrap_or_default(),
        End::Gone(c) | End::Violation(_, c) | End::DestGone(c) => c,
        End::DestStuck => "not reading".into(),
    }
}

/// [`close_leg`] on borrowed halves.
async fn close_leg_ref<T, R>(tx: &mut T, rx: &mut R, frame: Option<CloseFrame>, limit: Duration)
where
    T: Sink<Message, Error = WsError> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    send_close(tx, frame, limit).await;
    await_close(rx, limit).await;
}

/// Sends the buffered client messages to a new service leg, in order. On a failed write,
/// the unsent messages (the failed one first) stay in `buffer`.
async fn deliver<T>(
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

/// [`relay`] with session failover: when the service leg ends abnormally and `f` allows it,
/// the client leg stays open while `f` opens a new service leg (issue 6); see [`Reconnect`].
///
/// What is preserved across a switch: the client connection, the order of the client's
/// messages (those sent while reconnecting are held, up to
/// [`RelayConfig::failover_buffer_bytes`], and delivered first). What is not: any state the old
/// instance held, and messages the old instance had accepted (or that were being written to
/// it) but not answered.
pub fn relay_with_failover<'a, C, S, F>(
    client: C,
    service: S,
    counters: &'a Counters,
    cfg: &'a RelayConfig,
    shutdown: &'a CancellationToken,
    mut f: F,
) -> impl std::future::Future<Output = Outcome> + 'a
where
    C: Sink<Message, Error = WsError>
        + ReadProgress
        + Stream<Item = Result<Message, WsError>>
        + Unpin
        + 'a,
    S: Sink<Message, Error = WsError>
        + ReadProgress
        + Stream<Item = Result<Message, WsError>>
        + Unpin
        + 'a,
    F: Reconnect<S> + 'a,
{
    let (mut c_tx, mut c_rx) = split_leg(client);
    let (mut s_tx, mut s_rx) = split_leg(service);
    // An async block, not an async fn: an async fn keeps its arguments twice for its whole
    // life (as arguments and as locals), and this future is per-session memory (issue 7).
    async move {
        let limit = cfg.close_timeout;

        let activity = Activity::new();
        let (client_heard, service_heard) =
            (Heard::new(activity.start), Heard::new(activity.start));
        let mut pending: Option<(Side, End)> = None;
        // Where each pump resumes: a message read but not handed over yet survives the pump,
        // to be delivered when the session moves or closes (issue 14 item 5).
        let (mut c_step, mut s_step) = (Step::Read, Step::Read);
        loop {
            let first = match pending.take() {
                Some(e) => Ok(e),
                None => {
                    // The pumps are built inside `select!`: a future moved into another one
                    // from a local would take its space twice (issue 7).
                    tokio::select! {
                        e = pump(
                            &mut c_rx,
                            &mut s_tx,
                            &counters.messages_in,
                            &counters.bytes_in,
                            &activity,
                            cfg,
                            &client_heard,
                            &service_heard,
                            &mut c_step,
                        ) => Ok((Side::Client, e)),
                        e = pump(
                            &mut s_rx,
                            &mut c_tx,
                            &counters.messages_out,
                            &counters.bytes_out,
                            &activity,
                            cfg,
                            &service_heard,
                            &client_heard,
                            &mut s_step,
                        ) => Ok((Side::Service, e)),
                        () = shutdown.cancelled() => Err((CloseCode::Away, "gateway shutting down")),
                        () = activity.idle(cfg.idle_timeout) => Err((CloseCode::Normal, "idle timeout")),
                    }
                }
            };

            if let Ok((side, end)) = &first {
                // A client that closed while its pump still flushed ends the session.
                let client_left = matches!(c_step, Step::Close(_));
                if let Some(cause) =
                    failover_cause(*side, end).filter(|_| f.may_switch() && !client_left)
                {
                    let answer_old = matches!(end, End::Close(_));
                    // A client message read for the old instance goes first to the new one.
                    let first_held = match std::mem::replace(&mut c_step, Step::Read) {
                        Step::Write(m @ (Message::Text(_) | Message::Binary(_))) => Some(m),
                        _ => None,
                    };
                    // Boxed, as the other rare phases below: a future is as large as its largest
                    // state, and every session carries its relay future (issue 7).
                    match Box::pin(fail_over(
                        &mut c_tx,
                        &mut c_rx,
                        (s_tx, s_rx),
                        first_held,
                        answer_old,
                        &cause,
                        &mut f,
                        counters,
                        cfg,
                        shutdown,
                    ))
                    .await
                    {
                        Failover::Ended(outcome) => return outcome,
                        Failover::Switched(leg, mut buffer, bytes) => {
                            let n = buffer.len();
                            (s_tx, s_rx) = split_leg(leg);
                            service_heard.touch();
                            let delivered =
                                Box::pin(deliver(&mut s_tx, &mut buffer, cfg.write_timeout)).await;
                            f.switched(&cause, n, bytes);
                            if let Err(e) = delivered {
                                // The new instance failed at once: fail over again (the undelivered
                                // messages are lost if that is not allowed).
                                pending = Some((Side::Client, e));
                            }
                            continue;
                        }
                    }
                }
            }

            let (side, end) = match first {
                Ok(e) => e,
                Err((code, reason)) => {
                    // The relay itself ends the session: both legs get the same close frame.
                    let f = close_frame(code, reason);
                    Box::pin(async move {
                        tokio::join!(
                            close_leg(c_tx, c_rx, Some(f.clone()), limit),
                            close_leg(s_tx, s_rx, Some(f), limit)
                        )
                    })
                    .await;
                    return Outcome {
                        closed_by: None,
                        code: Some(u16::from(code)),
                        reason: reason.into(),
                    };
                }
            };

            // The other pump's held message goes on (towards the leg that closed) before its
            // close answer.
            return match side {
                Side::Client => {
                    let to_src = (&counters.messages_out, &counters.bytes_out, s_step);
                    Box::pin(finish(side, end, (c_tx, c_rx), (s_tx, s_rx), to_src, limit)).await
                }
                Side::Service => {
                    let to_src = (&counters.messages_in, &counters.bytes_in, c_step);
                    Box::pin(finish(side, end, (s_tx, s_rx), (c_tx, c_rx), to_src, limit)).await
                }
            };
        }
    }
}

/// Ends a leg the relay closes: sends `frame`, waits (bounded) for the answer, then drops
/// both halves, which closes the connection.
async fn close_leg<T, R>(mut tx: T, mut rx: R, frame: Option<CloseFrame>, limit: Duration)
where
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
async fn finish<ST, SR, DT, DR>(
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
                    if let Step::Write(m @ (Message::Text(_) | Message::Binary(_))) = held {
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
                        if (m.is_text() || m.is_binary())
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
                close_leg(src_tx, src_rx, Some(close_frame(code, &cause)), limit),
                close_leg(dst_tx, dst_rx, Some(to_other), limit)
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
            let reason = format!("{} is not reading", other.as_str());
            close_leg(
                src_tx,
                src_rx,
                Some(close_frame(CloseCode::Error, &reason)),
                limit,
            )
            .await;
            Outcome {
                closed_by: Some(other),
                code: Some(1011),
                reason,
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
async fn deliver_counted<T>(
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
async fn leg_lost<T, R>(lost: Side, tx: T, rx: R, cause: String, limit: Duration) -> Outcome
where
    T: Sink<Message, Error = WsError> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let f = match lost {
        Side::Service => close_frame(CloseCode::Error, "service connection lost"),
        Side::Client => close_frame(CloseCode::Away, "client connection lost"),
    };
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
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    /// A test peer (client or service) speaking through tungstenite.
    type Ws = WebSocketStream<DuplexStream>;
    /// One of the relay's own legs.
    pub(super) type RelayLeg = crate::proxy::leg::Leg<DuplexStream>;

    /// Returns (peer client, relay's client leg, relay's service leg, peer service).
    async fn legs(max: usize) -> (Ws, RelayLeg, RelayLeg, Ws) {
        let limits = crate::proxy::leg::Limits {
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
    async fn a_client_that_stops_reading_cannot_grow_buffers_and_is_dropped_after_the_write_timeout(
    ) {
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
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
            }),
            write_timeout: Duration::from_secs(120),
            ..short_cfg()
        };
        let relay =
            tokio::spawn(
                async move { relay(c_leg, s_leg, &Counters::default(), &cfg, &token).await },
            );
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
        let limits = crate::proxy::leg::Limits {
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
        let cfg = RelayConfig {
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
            }),
            ..short_cfg()
        };
        let relay =
            tokio::spawn(
                async move { relay(c_leg, s_leg, &Counters::default(), &cfg, &token).await },
            );
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
        let cfg = RelayConfig {
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
            }),
            ..short_cfg()
        };
        let relay =
            tokio::spawn(
                async move { relay(c_leg, s_leg, &Counters::default(), &cfg, &token).await },
            );
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
}

#[cfg(test)]
mod failover_tests {
    use super::tests::next_close;
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::DuplexStream;
    use tokio::sync::oneshot;
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
        let text = tokio_tungstenite::tungstenite::Utf8Bytes::try_from(chunk.split_to(5).freeze())
            .unwrap();
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
}
/// Every session carries its relay future for its whole life, so its size is per-session
/// memory (issue 7: at most 4 KiB per idle ws session, both legs included). These bounds keep
/// a change from quietly growing it (measured: pump 168 bytes, relay 1,240 bytes).
#[cfg(test)]
mod count_tests {
    use super::*;

    /// A destination that is ready `readies` times and then never again.
    struct Stalls {
        readies: usize,
    }

    impl ReadProgress for Stalls {
        fn bytes_read(&self) -> u64 {
            0
        }
    }

    impl Sink<Message> for Stalls {
        type Error = WsError;
        fn poll_ready(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            if self.readies == 0 {
                return std::task::Poll::Pending;
            }
            self.readies -= 1;
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, _: Message) -> Result<(), WsError> {
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Polls a pump once: `text` waits to be read, the destination takes `readies` calls of
    /// `poll_ready` and then stalls. Returns (messages, bytes) counted.
    fn one_poll(text: &str, readies: usize) -> (u64, u64) {
        let counters = Counters::default();
        let cfg = RelayConfig::default();
        let activity = Activity::new();
        let h = Heard::new(activity.start);
        let mut rx = futures_util::stream::iter(vec![Ok(Message::text(text))])
            .chain(futures_util::stream::pending());
        let mut tx = Stalls { readies };
        let mut step = Step::Read;
        let p = pump(
            &mut rx,
            &mut tx,
            &counters.messages_in,
            &counters.bytes_in,
            &activity,
            &cfg,
            &h,
            &h,
            &mut step,
        );
        assert!(futures_util::FutureExt::now_or_never(p).is_none());
        (
            counters.messages_in.load(Ordering::Relaxed),
            counters.bytes_in.load(Ordering::Relaxed),
        )
    }

    /// Issue 14 item 5: a message a pump read but could not hand over when the session ended
    /// is not counted as relayed; one handed over is.
    #[tokio::test]
    async fn a_message_held_when_the_pump_ends_is_not_counted() {
        // Read, then the destination stops taking it; the session ends.
        assert_eq!(one_poll("held", 1), (0, 0));
        assert_eq!(one_poll("sent", 2), (1, 4));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    type L = crate::proxy::leg::Leg<tokio::io::DuplexStream>;

    #[tokio::test]
    async fn the_relay_future_of_an_idle_session_stays_small() {
        let (a, _b) = tokio::io::duplex(16);
        let (c, _d) = tokio::io::duplex(16);
        let counters = Counters::default();
        let token = CancellationToken::new();
        let cfg = RelayConfig::default();
        let (mut c_tx, mut c_rx) = split_leg(L::new(a, Role::Server, Default::default()));
        let activity = Activity::new();
        let h = Heard::new(activity.start);
        let mut step = Step::Read;
        let p = pump(
            &mut c_rx,
            &mut c_tx,
            &counters.messages_in,
            &counters.bytes_in,
            &activity,
            &cfg,
            &h,
            &h,
            &mut step,
        );
        assert!(
            std::mem::size_of_val(&p) <= 256,
            "pump: {} bytes",
            std::mem::size_of_val(&p)
        );
        drop(p);
        let Ok(client) = c_tx.reunite(c_rx) else {
            panic!("halves of one leg")
        };
        let service = L::new(c, Role::Client, Default::default());
        let f = relay(client, service, &counters, &cfg, &token);
        assert!(
            std::mem::size_of_val(&f) <= 1536,
            "relay: {} bytes",
            std::mem::size_of_val(&f)
        );
        assert!(std::mem::size_of::<L>() <= 192);
    }
}
