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
//! - pings are answered by the leg that received them ([`crate::ws::leg::Leg`] queues the pong)
//!   and also forwarded; pongs are hop-by-hop and not forwarded;
//! - a close frame is forwarded with its code and reason (a close without a code stays one);
//!   what the other side sends until its close answer still reaches the side that closed,
//!   which gets its own answer after that, all within `close_timeout` (issue 14 item 5);
//! - an abnormal end of one leg (EOF or reset without a close frame, I/O error) closes the
//!   other leg: the client with 1011 when the service went away, the service with 1001 when
//!   the client went away. 1005, 1006 and 1015 are never sent;
//! - a protocol violation closes the offending leg with 1002 (1007 for invalid UTF-8, 1009 for
//!   a message over the size limit) and the other leg with 1011 (1009 for size);
//! - both legs always end together: when this function returns, both legs were closed (or
//!   failed) and dropped. Each leg is dropped as soon as its own close handshake is over (or
//!   `close_timeout` ran out).
//!
//! Files: [`pump`](self) (one direction), `finish` (close sequencing), `failover` (delivery
//! while a new service leg opens), `liveness` (keepalive and idle), `split` (the legs' halves).
//! [`relay`] and [`relay_with_failover`] here tie them together.

use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::close::{violation, Ending};
use crate::ws::leg::ReadProgress;

mod counters;
mod failover;
mod finish;
mod liveness;
mod pump;
mod split;

pub use counters::Counters;
use failover::*;
pub use failover::{NoFailover, Reconnect, Refused, HELD_MESSAGE_OVERHEAD};
use finish::*;
use liveness::*;
use pump::*;
pub use split::{split_leg, Half};

/// What the relay needs of a leg (client or service): a `Stream` of received messages, a
/// `Sink` of messages to send, and its read progress for keepalive
/// ([`crate::ws::leg::Leg`] is one; tests use it over in-memory pipes).
pub trait WsPeer:
    Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + ReadProgress + Unpin
{
}

impl<T> WsPeer for T where
    T: Sink<Message, Error = WsError>
        + Stream<Item = Result<Message, WsError>>
        + ReadProgress
        + Unpin
{
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
    C: WsPeer + 'a,
    S: WsPeer + Send + 'a,
{
    relay_with_failover(client, service, counters, cfg, shutdown, NoFailover)
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
    C: WsPeer + 'a,
    S: WsPeer + 'a,
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
                        () = shutdown.cancelled() => Err(Ending::Shutdown),
                        () = activity.idle(cfg.idle_timeout) => Err(Ending::Idle),
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
                        Step::Write(
                            m @ (Message::Text(_) | Message::Binary(_) | Message::Frame(_)),
                        ) => Some(m),
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
                Err(ending) => {
                    // The relay itself ends the session: both legs get the same close frame.
                    let f = ending.frame();
                    Box::pin(async move {
                        tokio::join!(
                            close_leg(c_tx, c_rx, Some(f.clone()), limit),
                            close_leg(s_tx, s_rx, Some(f), limit)
                        )
                    })
                    .await;
                    return Outcome {
                        closed_by: None,
                        code: Some(u16::from(ending.code())),
                        reason: ending.reason().into_owned(),
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

#[cfg(test)]
mod count_tests;
#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod size_tests;
#[cfg(test)]
mod tests;
