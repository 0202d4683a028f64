//! The accept loop and the per-connection task.
//!
//! The loop only accepts and spawns: the TLS handshake and the HTTP request head run inside
//! the connection's own task, each under `limits.handshake_timeout`, so a slow client never
//! blocks other clients (pingora's `listening.rs` does the same). Accept errors (EMFILE,
//! ENFILE, ECONNABORTED, ...) never end the loop: it backs off (10 ms doubling to 1 s) and
//! continues, logging the first error of a run of errors once.
//!
//! Before each accept the loop takes one of `limits.max_connections` permits (mini-redis's
//! connection semaphore); the connection's task holds it until the connection ends. With every
//! permit taken the loop stops accepting, so new connections wait in the kernel's listen
//! backlog (and get refused by the kernel once it is full) instead of costing a task, a TLS
//! handshake and memory each. Reaching the cap is logged once per episode and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::router::{client_side, handle_request};
use crate::state::{ConnectionSlot, Shared};

/// Largest accepted HTTP request head, in bytes (hyper answers 431 above it).
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Accepts connections until `shared.closed` is cancelled (after the shutdown drain, so
/// health probes are still answered, with 503, while sessions drain). Each connection is served in a
/// task tracked by `shared.tracker`.
/// `tls` is the current listener configuration (swapped when the client CA bundle changes);
/// each connection takes the configuration current at its accept.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    shared: Arc<Shared>,
    max_connections: usize,
) {
    let mut backoff = Duration::from_millis(10);
    let mut failing = false;
    let permits = Arc::new(Semaphore::new(max_connections));
    let metrics = &shared.metrics.proxy;
    let refusals = Arc::new(RefusalLog::new(metrics.clone()));
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics.connection_limit_reached.inc();
                tracing::warn!(
                    max_connections,
                    "connection limit reached (limits.max_connections); new connections wait in the listen backlog until one closes"
                );
                let waited = tokio::select! {
                    () = shared.closed.cancelled() => break,
                    p = Arc::clone(&permits).acquire_owned() => p,
                };
                match waited {
                    Ok(p) => {
                        tracing::info!("below the connection limit again; accepting");
                        p
                    }
                    Err(_) => break, // never closed
                }
            }
        };
        let accepted = tokio::select! {
            () = shared.closed.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if failing {
                    tracing::info!("accepting connections again");
                    failing = false;
                }
                backoff = Duration::from_millis(10);
                let shared = Arc::clone(&shared);
                let tls = tls.as_ref().map(|t| t.load_full());
                let slot = Arc::new(ConnectionSlot::new(
                    permit,
                    &shared.metrics.proxy.connections_open,
                ));
                shared.tracker.clone().spawn(connection(
                    tcp,
                    peer,
                    tls,
                    shared,
                    slot,
                    Arc::clone(&refusals),
                ));
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "accept failed; backing off (logged once until accepting works again)");
                    failing = true;
                }
                tokio::select! {
                    () = shared.closed.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Why a connection failed below the upgrade (the `reason` label of
/// `wsrelay_connection_refusals_total`). The discriminant indexes [`RefusalLog`]'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The TLS handshake failed (not TLS, no shared version or cipher, bad client certificate).
    TlsHandshake,
    /// The client left during the TLS handshake.
    TlsIncomplete,
    /// The TLS handshake did not finish within `limits.handshake_timeout`.
    TlsTimeout,
    /// A transport error during the TLS handshake (e.g. a reset).
    TlsIo,
    /// An HTTP request head hyper could not parse (answered 400).
    MalformedRequest,
    /// A request head over the size limit (answered 431).
    HeadTooLarge,
    /// No complete request head within `limits.handshake_timeout`.
    HeadTimeout,
    /// The client left in the middle of a request.
    IncompleteRequest,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::TlsIncomplete => "tls_incomplete",
            Refusal::TlsTimeout => "tls_timeout",
            Refusal::TlsIo => "tls_io",
            Refusal::MalformedRequest => "malformed_request",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::HeadTimeout => "head_timeout",
            Refusal::IncompleteRequest => "incomplete_request",
        }
    }

    /// The HTTP status hyper answered with, if it answered.
    fn status(self) -> Option<&'static str> {
        match self {
            Refusal::MalformedRequest => Some("400"),
            Refusal::HeadTooLarge => Some("431"),
            _ => None,
        }
    }

    /// The refusal a failed TLS accept stands for; `None` for a client that closed before
    /// sending a byte (a TCP probe: neither counted nor logged).
    fn of_tls(e: &std::io::Error) -> Option<Refusal> {
        match e.kind() {
            std::io::ErrorKind::NotConnected => None,
            std::io::ErrorKind::InvalidData => Some(Refusal::TlsHandshake),
            std::io::ErrorKind::UnexpectedEof => Some(Refusal::TlsIncomplete),
            _ => Some(Refusal::TlsIo),
        }
    }

    /// The refusal an HTTP connection error stands for; `None` for errors after a request
    /// was served (a reset keep-alive connection, a cancelled upgrade).
    fn of_http(e: &hyper::Error) -> Option<Refusal> {
        if e.is_parse_too_large() {
            Some(Refusal::HeadTooLarge)
        } else if e.is_parse() || e.is_parse_status() {
            Some(Refusal::MalformedRequest)
        } else if e.is_timeout() {
            Some(Refusal::HeadTimeout)
        } else if e.is_incomplete_message() {
            Some(Refusal::IncompleteRequest)
        } else {
            None
        }
    }
}

/// How many kinds of [`Refusal`] there are (the last one's discriminant + 1).
const REFUSALS: usize = Refusal::IncompleteRequest as usize + 1;

/// Counts every refusal and logs them without flooding: per reason, the first one and then at
/// most one line every [`RefusalLog::EVERY`], saying how many were not logged in between.
pub struct RefusalLog {
    last: std::sync::Mutex<[(Option<std::time::Instant>, u64); REFUSALS]>,
    metrics: crate::metrics::ProxyMetrics,
}

impl RefusalLog {
    /// Least time between two log lines of one reason.
    pub const EVERY: Duration = Duration::from_secs(10);

    fn new(metrics: crate::metrics::ProxyMetrics) -> RefusalLog {
        RefusalLog {
            last: std::sync::Mutex::new([(None, 0); REFUSALS]),
            metrics,
        }
    }

    fn record(&self, what: Refusal, client: SocketAddr, cause: &dyn std::fmt::Display) {
        self.metrics
            .connection_refusals
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: what.as_str(),
            })
            .inc();
        if let Some(status) = what.status() {
            self.metrics
                .handshake_failures
                .get_or_create(&crate::metrics::StatusLabel {
                    status: status.to_owned(),
                })
                .inc();
        }
        let index = what as usize;
        let now = std::time::Instant::now();
        let suppressed = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let Some(entry) = last.get_mut(index) else {
                return;
            };
            match entry.0 {
                Some(at) if now.duration_since(at) < Self::EVERY => {
                    entry.1 += 1;
                    return;
                }
                _ => {
                    let n = entry.1;
                    *entry = (Some(now), 0);
                    n
                }
            }
        };
        tracing::info!(
            client = %client,
            reason = what.as_str(),
            cause = %cause,
            not_logged_since_last = suppressed,
            "connection refused before the upgrade (one line per reason every 10 s; every one is counted in wsrelay_connection_refusals_total)"
        );
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    slot: Arc<ConnectionSlot>,
    refusals: Arc<RefusalLog>,
) {
    let _ = tcp.set_nodelay(true);
    let local_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut client = client_side(peer, tls.is_some(), local_port);
    let result = match tls {
        None => serve_http(tcp, client, shared, slot).await,
        Some(config) => {
            let limit = shared.settings.load().handshake_timeout;
            // rustls' unbuffered API: no TLS buffer is held while the session is idle.
            match tokio::time::timeout(limit, crate::tls::stream::accept(tcp, config)).await {
                Ok(Ok(stream)) => {
                    // The verified client certificate (mutual TLS), for Zowe's x509 scheme.
                    client.cert = stream.peer_leaf();
                    client.http2 = stream.alpn_h2();
                    serve_http(stream, client, shared, slot).await
                }
                Ok(Err(e)) => {
                    match Refusal::of_tls(&e) {
                        Some(what) => refusals.record(what, peer, &e),
                        None => {
                            tracing::debug!(client = %peer, error = %e, "connection closed before TLS")
                        }
                    }
                    return;
                }
                Err(_) => {
                    refusals.record(
                        Refusal::TlsTimeout,
                        peer,
                        &"no TLS handshake within limits.handshake_timeout",
                    );
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        match Refusal::of_http(&e) {
            Some(what) => refusals.record(what, peer, &e),
            None => {
                tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error")
            }
        }
    }
}

async fn serve_http<I>(
    io: I,
    client: crate::session::handshake::ClientSide,
    shared: Arc<Shared>,
    slot: Arc<ConnectionSlot>,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = Arc::clone(&shared);
    let svc_client = client.clone();
    let svc = service_fn(move |req| {
        handle_request(
            req,
            Arc::clone(&svc_shared),
            svc_client.clone(),
            Arc::clone(&slot),
        )
    });
    let settings = shared.settings.load_full();
    if client.http2 {
        return serve_http2(io, svc, &shared, &settings).await;
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.handshake_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES.max(8192))
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    until_closed(conn, &shared, settings.relay.close_timeout, |c| {
        c.graceful_shutdown()
    })
    .await
}

/// Drives `conn` until it ends or the agent closes its listener; then asks it to finish
/// (`graceful`: no new requests or streams) and gives it `close_timeout`.
async fn until_closed<C>(
    conn: C,
    shared: &Shared,
    close_timeout: Duration,
    graceful: fn(std::pin::Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = shared.closed.cancelled() => {
            graceful(conn.as_mut());
            let _ = tokio::time::timeout(close_timeout, conn).await;
            Ok(())
        }
    }
}

/// Serves an HTTP/2 connection (ALPN `h2`): admin requests and WebSockets as extended
/// CONNECTs (RFC 8441, `SETTINGS_ENABLE_CONNECT_PROTOCOL`), each stream its own task and
/// session. Flow control is a session's backpressure: a stream's window (256 KiB) bounds what
/// is buffered for a session that is not read. The limits are in [`crate::config::Http2Limits`].
async fn serve_http2<I, S>(
    io: I,
    svc: S,
    shared: &Shared,
    settings: &crate::state::Settings,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<
            hyper::body::Incoming,
            ResBody = http_body_util::Full<bytes::Bytes>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max_streams = settings.http2.map_or(100, |h| h.max_streams);
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(max_streams)
        .max_header_list_size(MAX_REQUEST_HEAD_BYTES as u32)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        // Dead peers (no TCP reset seen) are found by PING, as HTTP/1.1 finds them by the
        // socket; a live idle connection stays, as over HTTP/1.1 keep-alive.
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    until_closed(conn, shared, settings.relay.close_timeout, |c| {
        c.graceful_shutdown()
    })
    .await
}

/// HTTP/2 flow-control window of a stream (bytes).
const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// HTTP/2 flow-control window of a connection (bytes).
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Output queued per HTTP/2 stream before its writer waits (bytes).
const H2_SEND_BUFFER: usize = 64 * 1024;
