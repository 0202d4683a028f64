//! The WebSocket proxy: accept loop, per-connection handshake, session relay.
//!
//! Everything for one client runs inside its own task (TLS handshake with a timeout, HTTP
//! request head with a timeout, route lookup, upstream connect, relay); the accept loop only
//! accepts and spawns.

pub mod close;
pub mod failover;
pub mod handshake;
pub mod leg;
pub mod listener;
pub mod relay;
pub mod tls_stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::RegistryStatus;
use crate::routing::FailoverMode;
use crate::routing::RouteTable;
use crate::sessions::{Counters, SessionInfo, SessionTable, Upstream};
use close::HandshakeError;
use handshake::{ClientSide, Connected, UpstreamSettings};
use relay::RelayConfig;
use std::sync::atomic::AtomicU32;

/// State shared by every connection task.
pub struct Shared {
    /// The current routing table (swapped by the registry source).
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Registry health (last success, source).
    pub registry: Arc<RegistryStatus>,
    /// Metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Live sessions.
    pub sessions: Arc<SessionTable>,
    /// Settings that a config reload (SIGHUP) may change; each handshake loads them once.
    pub settings: ArcSwap<Settings>,
    /// Cancelled when the agent starts shutting down: sessions get 1001, upgrades 503,
    /// health DOWN.
    pub shutdown: CancellationToken,
    /// Cancelled after the drain: the listener closes and idle connections end.
    pub closed: CancellationToken,
    /// Tracks connection and session tasks for the shutdown drain.
    pub tracker: TaskTracker,
    /// When the agent started.
    pub started_at: SystemTime,
    /// Config file path, for `/application/info`.
    pub config_path: Option<String>,
    /// The listener's certificate store (None without TLS), for health and metrics.
    pub cert: Option<Arc<crate::tls::CertStore>>,
}

/// The settings a config reload can change for new sessions and connections.
#[derive(Clone)]
pub struct Settings {
    /// How to reach services (timeouts, TLS client, WebSocket limits).
    pub upstream: UpstreamSettings,
    /// Instances tried per session.
    pub max_attempts: usize,
    /// Frame and message limits of the client leg.
    pub client_limits: leg::Limits,
    /// Relay settings.
    pub relay: RelayConfig,
    /// TLS handshake + request head timeout.
    pub handshake_timeout: Duration,
    /// Who may use `/application/*`.
    pub admin: crate::config::AdminConfig,
    /// How long a shutdown waits for sessions.
    pub shutdown_grace: Duration,
    /// `limits.max_sessions`.
    pub max_sessions: Option<usize>,
    /// `limits.max_sessions_per_ip`.
    pub max_sessions_per_ip: Option<usize>,
    /// `upstream.insecure_skip_verify` (shown in `/application/info`).
    pub insecure_skip_verify: bool,
    /// `[failover]`: the default mode and the switch limit (buffer and deadline are in
    /// `relay`).
    pub failover: crate::config::FailoverConfig,
}

/// Handles one HTTP request on a client connection: admin endpoints or a WebSocket upgrade.
pub async fn handle_request(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    client: ClientSide,
    slot: Arc<listener::ConnectionSlot>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path();
    if path == "/application" || path.starts_with("/application/") {
        return Ok(crate::admin::handle(&req, &shared, client.peer));
    }
    let gateway_path = path.to_owned();
    match open_session(req, &shared, client, slot).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            let status = e.status().as_u16();
            shared
                .metrics
                .proxy
                .handshake_failures
                .get_or_create(&crate::metrics::StatusLabel {
                    status: status.to_string(),
                })
                .inc();
            if status >= 500 {
                tracing::warn!(client = %client.peer, path = %gateway_path, status, cause = %e, "handshake failed");
            } else {
                tracing::info!(client = %client.peer, path = %gateway_path, status, cause = %e, "handshake refused");
            }
            Ok(e.to_response())
        }
    }
}

async fn open_session(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    client: ClientSide,
    conn_slot: Arc<listener::ConnectionSlot>,
) -> Result<Response<Full<Bytes>>, HandshakeError> {
    if shared.shutdown.is_cancelled() {
        return Err(HandshakeError::ShuttingDown);
    }
    let settings = shared.settings.load_full();
    let slot = shared
        .sessions
        .reserve(
            client.peer.ip(),
            settings.max_sessions,
            settings.max_sessions_per_ip,
        )
        .map_err(|r| {
            HandshakeError::TooManySessions(match r {
                crate::sessions::SlotRefused::Total(n) => {
                    format!("the gateway is at its limit of {n} sessions")
                }
                crate::sessions::SlotRefused::PerIp(n) => {
                    format!("this client address is at its limit of {n} sessions")
                }
            })
        })?;
    let table = shared.routes.load_full();
    let resolved = table.resolve(req.uri().path(), req.uri().query())?;
    let upgrade = handshake::validate_upgrade(&req)?;
    let service = &resolved.service;
    if service.up_count() == 0 {
        return Err(HandshakeError::NoInstance(service.service_id.clone()));
    }
    let mut last_err = None;
    let mut connected: Option<(Connected, &crate::routing::Endpoint)> = None;
    let mut candidates = service.candidates(settings.max_attempts).peekable();
    while let Some(ep) = candidates.next() {
        match handshake::connect(
            ep,
            &service.service_id,
            &resolved.upstream_path,
            req.headers(),
            &upgrade.protocols,
            client,
            &settings.upstream,
        )
        .await
        {
            Ok(c) => {
                connected = Some((c, ep));
                break;
            }
            Err(e) if handshake::is_retryable(&e) => {
                // The last attempt's failure is the handshake's, logged once with it.
                if candidates.peek().is_some() {
                    tracing::warn!(service = %service.service_id, instance = %ep.instance_id, cause = %e, "upstream attempt failed; trying the next instance");
                } else {
                    tracing::debug!(service = %service.service_id, instance = %ep.instance_id, cause = %e, "upstream attempt failed; no other instance to try");
                }
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some((conn, ep)) = connected else {
        return Err(
            last_err.unwrap_or_else(|| HandshakeError::NoInstance(service.service_id.clone()))
        );
    };
    let resp = handshake::switching_protocols(&upgrade.key, conn.protocol.as_ref());
    let (key, id) = shared.sessions.next_id();
    let info = SessionInfo {
        id,
        client: client.peer,
        gateway_path: req.uri().path().to_owned(),
        upstream: std::sync::Mutex::new(Upstream {
            instance_id: ep.instance_id.clone(),
            service_url: handshake::upstream_url(ep, &resolved.upstream_path),
        }),
        failovers: AtomicU32::new(0),
        service_id: service.service_id.clone(),
        route: resolved.route().map(|r| r.name.clone()).unwrap_or_default(),
        subprotocol: conn
            .protocol
            .as_ref()
            .and_then(|p| p.to_str().ok())
            .map(str::to_owned),
        started_at: SystemTime::now(),
        counters: Counters::default(),
    };
    let mode = resolved
        .route()
        .and_then(|r| r.failover)
        .unwrap_or(settings.failover.mode);
    // Only a session that may fail over keeps what a reconnect needs.
    // Boxed: a session task keeps what it captured for its whole life.
    let failover_ctx = (mode == FailoverMode::Reconnect).then(|| {
        Box::new((
            req.uri().path().to_owned(),
            req.uri().query().map(str::to_owned),
            req.headers().clone(),
            client,
        ))
    });
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared2 = Arc::clone(shared);
    let connect_ms = u64::try_from(conn.elapsed.as_millis()).unwrap_or(u64::MAX);
    shared
        .metrics
        .proxy
        .upstream_connect
        .observe(conn.elapsed.as_secs_f64());
    // The session enters the table now; the task captures only the guard (a task keeps what
    // it captured for its whole life, so every byte here is per-session memory, issue 7).
    let guard = shared.sessions.insert(key, info);
    // Boxed until the relay splits it: the task would keep the leg's bytes twice otherwise.
    let service_leg = Box::new(conn.ws);
    shared.tracker.spawn(async move {
        let guard = guard;
        // Declared after the guard so it is released first: once a session has left the
        // table, its slot is free.
        let _slot = slot;
        // The connection's `limits.max_connections` permit lives as long as the session.
        let _conn_slot = conn_slot;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(session = %guard.info().id, cause = %e, "client upgrade failed after 101");
                return;
            }
        };
        let client_ws = leg::Leg::new(TokioIo::new(upgraded), Role::Server, settings.client_limits);
        let s = guard.info();
        // Made again after the relay rather than kept across it (per-session memory).
        let service_label = || crate::metrics::ServiceLabel {
            service: s.service_id.clone(),
        };
        let metrics = &shared2.metrics.proxy;
        metrics.sessions_open.get_or_create(&service_label()).inc();
        {
            let up = s.upstream();
            tracing::info!(
                session = %s.id, client = %s.client, service = %s.service_id, instance = %up.instance_id,
                upstream = %up.service_url, subprotocol = s.subprotocol.as_deref().unwrap_or(""), connect_ms,
                "session opened"
            );
        }
        let started = Instant::now();
        let outcome = match failover_ctx {
            None => relay::relay(client_ws, *service_leg, &s.counters, &settings.relay, &shared2.shutdown).await,
            Some(ctx) => {
                let (path, query, headers, client) = *ctx;
                let f = failover::SessionFailover::new(
                    Arc::clone(&shared2),
                    Arc::clone(&settings),
                    Arc::clone(s),
                    mode,
                    path,
                    query,
                    headers,
                    s.subprotocol.clone(),
                    client,
                );
                // Boxed: the failover machinery (a whole upstream handshake) must not grow
                // the task of every session that does not use it.
                Box::pin(relay::relay_with_failover(client_ws, *service_leg, &s.counters, &settings.relay, &shared2.shutdown, f)).await
            }
        };
        s.counters.sync(metrics);
        let service_label = service_label();
        metrics.sessions_open.get_or_create(&service_label).dec();
        metrics
            .sessions_total
            .get_or_create(&crate::metrics::SessionEndLabels {
                service: service_label.service.clone(),
                close_code: crate::metrics::close_code_label(outcome.code.unwrap_or(1005)),
            })
            .inc();
        let v = s.view();
        tracing::info!(
            session = %s.id, client = %s.client, service = %s.service_id, instance = %v.instance_id,
            upstream = %v.service_url, failovers = v.failovers, duration_ms = started.elapsed().as_millis() as u64,
            messages_in = v.messages_in, messages_out = v.messages_out, bytes_in = v.bytes_in, bytes_out = v.bytes_out,
            closed_by = outcome.closed_by.map_or("gateway", |s| s.as_str()),
            close_code = outcome.code.unwrap_or(1005), close_reason = %outcome.reason,
            "session closed"
        );
        drop(guard);
    });
    Ok(resp)
}

/// A client's address as seen by the proxy.
pub fn client_side(peer: SocketAddr, tls: bool, local_port: u16) -> ClientSide {
    ClientSide {
        peer,
        tls,
        local_port,
    }
}
