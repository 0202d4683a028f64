//! Opening a session: the slot, the route, the upgrade checks, the upstream connect with
//! retries over the service's instances, the 101, and the session task (its log lines and
//! metrics) with or without failover.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::failover;
use super::handshake::{self, ClientSide, Connected};
use super::table::{Counters, SessionInfo, Upstream};
use crate::close::HandshakeError;
use crate::config::{FailoverMode, FailureAnswer};
use crate::relay;
use crate::state::{Settings, Shared};
use crate::ws::leg;

/// A refused upgrade: the failure and how to answer it (the route's
/// `apiml.routes.<name>.handshakeFailure`, else `handshake.failure`).
#[derive(Debug)]
pub struct Refusal {
    /// What failed (and the HTTP status it maps to).
    pub error: HandshakeError,
    /// An HTTP status, or 101 and a close.
    pub answer: FailureAnswer,
}

/// Opens a session for the upgrade request `req` of `client` (see the module doc); the
/// session task holds `conn_slot` (its connection's `limits.max_connections` permit).
///
/// # Errors
/// A [`Refusal`]: the [`HandshakeError`] and how the client is to be told.
pub async fn open_session(
    req: &mut Request<Incoming>,
    shared: &Arc<Shared>,
    client: &ClientSide,
    conn_slot: Arc<crate::state::ConnectionSlot>,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let settings = shared.settings.load_full();
    let mut answer = settings.handshake.failure;
    open(req, shared, &settings, client, conn_slot, &mut answer)
        .await
        .map_err(|error| Refusal { error, answer })
}

async fn open(
    req: &mut Request<Incoming>,
    shared: &Arc<Shared>,
    settings: &Arc<Settings>,
    client: &ClientSide,
    conn_slot: Arc<crate::state::ConnectionSlot>,
    answer: &mut FailureAnswer,
) -> Result<Response<Full<Bytes>>, HandshakeError> {
    if shared.shutdown.is_cancelled() {
        return Err(HandshakeError::ShuttingDown);
    }
    let slot = shared
        .sessions
        .reserve(
            client.peer.ip(),
            settings.max_sessions,
            settings.max_sessions_per_ip,
        )
        .map_err(|r| {
            HandshakeError::TooManySessions(match r {
                super::table::SlotRefused::Total(n) => {
                    format!("the gateway is at its limit of {n} sessions")
                }
                super::table::SlotRefused::PerIp(n) => {
                    format!("this client address is at its limit of {n} sessions")
                }
            })
        })?;
    let table = shared.routes.load_full();
    let resolved = table.resolve(req.uri().path(), req.uri().query())?;
    let route = resolved.route();
    if let Some(a) = route.and_then(|r| r.handshake_failure) {
        *answer = a;
    }
    let upgrade = handshake::validate_upgrade(req)?;
    // Cross-site WebSocket hijacking: a browser page of another site is refused before any
    // upstream connect (the route's list wins over `handshake.allowed_origins`).
    if let Some(list) = route
        .and_then(|r| r.origins.as_ref())
        .or(settings.handshake.allowed_origins.as_ref())
    {
        check_origin(req.headers(), list)?;
    }
    let service = &resolved.service;
    // `X-InstanceId` pins the instance (Zowe v3); otherwise a sticky key prefers the instance
    // it reached last, then the round robin.
    let pinned = match settings.routing.instance_id_header {
        true => pinned_instance(req.headers(), service)?,
        false => None,
    };
    let sticky = match (&settings.routing.sticky, pinned) {
        (Some(table), None) => table
            .slot(&service.service_id.to_ascii_lowercase(), req.headers())
            .map(|slot| (Arc::clone(table), slot)),
        _ => None,
    };
    if pinned.is_none() && service.up_count() == 0 {
        return Err(HandshakeError::NoInstance(service.service_id.clone()));
    }
    let preferred = sticky.as_ref().and_then(|(t, slot)| t.get(*slot));
    let candidates = match pinned {
        Some(ep) => service.only(&ep.instance_id),
        None => service.candidates_from(preferred.as_deref(), settings.max_attempts),
    };
    let mut last_err = None;
    let mut connected: Option<(Connected, &crate::routing::Endpoint)> = None;
    let identity = handshake::Identity::of(service, client)?;
    // permessage-deflate: the client leg's answer now; the service is offered it (by
    // `deflate.service`) and answers for its own leg.
    let client_deflate = crate::ws::deflate::accept_offer(req.headers(), &settings.deflate);
    let offer_service =
        crate::ws::deflate::offers_service(&settings.deflate, client_deflate.is_some());
    let fwd = handshake::Forward {
        path: &resolved.upstream_path,
        headers: req.headers(),
        offered: &upgrade.protocols,
        client,
        identity: &identity,
        deflate: offer_service.then_some(&settings.deflate),
    };
    let mut candidates = candidates.peekable();
    while let Some(ep) = candidates.next() {
        match handshake::connect(ep, &service.service_id, &fwd, &settings.upstream).await {
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
    if let Some((table, slot)) = &sticky {
        table.set(*slot, &ep.instance_id);
    }
    let (client_deflate, deflate_answer) = client_deflate.unzip();
    let resp = handshake::switching_protocols(
        upgrade.key.as_ref(),
        conn.protocol.as_ref(),
        deflate_answer.as_ref(),
    );
    let service_deflate = conn.ws.deflate().is_some();
    let http = if client.http2 { "2" } else { "1.1" };
    let (key, id) = shared.sessions.next_id();
    // One span per session: every line it logs carries its id, client, service and instance
    // (the instance is recorded again when the session fails over). Entered for its log lines
    // only, not around the relay: entering a span on every poll costs the hot path.
    let span = tracing::info_span!(
        "session",
        session = %id,
        client = %client.peer,
        service = %service.service_id,
        instance = %ep.instance_id,
    );
    let info = SessionInfo {
        id,
        client: client.peer,
        gateway_path: handshake::request_uri(req, client).into_boxed_str(),
        upstream: std::sync::Mutex::new(Upstream {
            instance_id: ep.instance_id.clone(),
            service_url: handshake::upstream_url(ep, &resolved.upstream_path),
            local_addr: conn.local_addr,
        }),
        failovers: AtomicU32::new(0),
        service_id: service.service_id.clone(),
        route: resolved
            .route()
            .map(|r| r.name.as_str())
            .unwrap_or("")
            .into(),
        subprotocol: conn
            .protocol
            .as_ref()
            .and_then(|p| p.to_str().ok())
            .map(str::to_owned),
        started_at: SystemTime::now(),
        counters: Counters::default(),
    };
    // A session pinned with `X-InstanceId` stays on that instance: it does not fail over.
    let mode = match pinned {
        Some(_) => FailoverMode::Close,
        None => resolved
            .route()
            .and_then(|r| r.failover)
            .unwrap_or(settings.failover.mode),
    };
    // Only a session that may fail over keeps what a reconnect needs.
    // Boxed: a session task keeps what it captured for its whole life.
    let failover_ctx = (mode == FailoverMode::Reconnect).then(|| {
        Box::new((
            req.uri().path().to_owned(),
            req.uri().query().map(str::to_owned),
            req.headers().clone(),
            client.clone(),
            sticky,
        ))
    });
    let on_upgrade = hyper::upgrade::on(&mut *req);
    let settings = Arc::clone(settings);
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
                span.in_scope(|| tracing::warn!(cause = %e, "client upgrade failed after 101"));
                return;
            }
        };
        let mut client_ws = leg::Leg::new(TokioIo::new(upgraded), Role::Server, settings.client_limits)
            .with_deflate(client_deflate.map(|a| crate::ws::deflate::Codec::new(a, &settings.deflate)));
        // Compressed on both legs with parameters that allow it: compressed messages cross
        // as they are, without being inflated and compressed again.
        let mut service_leg = service_leg;
        client_ws.forward_compressed_to(service_leg.deflate());
        service_leg.forward_compressed_to(client_ws.deflate());
        let s = guard.info();
        // Made again after the relay rather than kept across it (per-session memory).
        let service_label = || crate::metrics::ServiceLabel {
            service: s.service_id.clone(),
        };
        let metrics = &shared2.metrics.proxy;
        metrics.sessions_open.get_or_create(&service_label()).inc();
        metrics.sessions_opened.get_or_create(&service_label()).inc();
        if http == "2" {
            metrics.http2_sessions.inc();
        }
        for (leg, agreed) in [("client", client_deflate.is_some()), ("service", service_deflate)] {
            if agreed {
                metrics.deflate_sessions.get_or_create(&crate::metrics::LegLabel { leg }).inc();
            }
        }
        {
            let up = s.upstream();
            span.in_scope(|| tracing::info!(
                upstream = %up.service_url, subprotocol = s.subprotocol.as_deref().unwrap_or(""), connect_ms,
                deflate = deflate_legs(client_deflate.is_some(), service_deflate), http,
                "session opened"
            ));
        }
        let started = Instant::now();
        let outcome = match failover_ctx {
            None => relay::relay(client_ws, *service_leg, &s.counters, &settings.relay, &shared2.shutdown).await,
            Some(ctx) => {
                let (path, query, headers, client, sticky) = *ctx;
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
                    span.clone(),
                )
                .with_sticky(sticky)
                .with_deflate(client_ws.deflate());
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
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let closed_by = outcome.closed_by.map_or("gateway", |s| s.as_str());
        let close_code = outcome.code.unwrap_or(1005);
        span.in_scope(|| tracing::info!(
            upstream = %v.service_url, failovers = v.failovers, duration_ms,
            messages_in = v.messages_in, messages_out = v.messages_out, bytes_in = v.bytes_in, bytes_out = v.bytes_out,
            closed_by, close_code, close_reason = %outcome.reason,
            "session closed"
        ));
        // The view's strings move into the record of closed sessions (`admin.recent`).
        shared2.closed_sessions.push(super::recent::ClosedSession {
            gateway_path: super::recent::cut(&v.gateway_path),
            session_id: v.session_id,
            client_address: v.client_address,
            service_id: v.service_id,
            instance_id: v.instance_id,
            started_at: v.started_at,
            ended_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            duration_ms,
            close_code,
            close_reason: super::recent::cut(&outcome.reason),
            closed_by,
            failovers: v.failovers,
            messages_in: v.messages_in,
            messages_out: v.messages_out,
            bytes_in: v.bytes_in,
            bytes_out: v.bytes_out,
        });
        drop(guard);
    });
    Ok(resp)
}

/// Which legs agreed to permessage-deflate, for the "session opened" line.
fn deflate_legs(client: bool, service: bool) -> &'static str {
    match (client, service) {
        (true, true) => "both",
        (true, false) => "client",
        (false, true) => "service",
        (false, false) => "none",
    }
}

/// The request header that names the instance to use (Zowe v3's `DeterministicLoadBalancer`).
const INSTANCE_ID_HEADER: &str = "x-instanceid";

/// The instance `X-InstanceId` names, if the request has the header (an empty one counts as
/// absent).
///
/// # Errors
/// [`HandshakeError::UnknownInstance`] (404) when the service has no such instance,
/// [`HandshakeError::InstanceNotUp`] (503) when it is not UP, and
/// [`HandshakeError::BadRequest`] for a value that is not visible ASCII or repeated headers.
fn pinned_instance<'s>(
    headers: &http::HeaderMap,
    service: &'s crate::routing::Service,
) -> Result<Option<&'s crate::routing::Endpoint>, HandshakeError> {
    let mut values = headers.get_all(INSTANCE_ID_HEADER).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return match headers.contains_key(INSTANCE_ID_HEADER) {
            true => Err(HandshakeError::BadRequest(
                "more than one X-InstanceId header".into(),
            )),
            false => Ok(None),
        };
    };
    let id = v
        .to_str()
        .map_err(|_| HandshakeError::BadRequest("X-InstanceId is not visible ASCII".into()))?
        .trim();
    if id.is_empty() {
        return Ok(None);
    }
    let ep = service
        .instance(id)
        .ok_or_else(|| HandshakeError::UnknownInstance {
            service: service.service_id.clone(),
            instance: id.to_owned(),
        })?;
    if ep.status != crate::registry::Status::Up {
        return Err(HandshakeError::InstanceNotUp {
            service: service.service_id.clone(),
            instance: id.to_owned(),
            status: ep.status.as_str(),
        });
    }
    Ok(Some(ep))
}

/// Refuses a request whose `Origin` (set by browsers on every upgrade, RFC 6455 §10.2) is not
/// in `list`; a request without one (not from a browser page) passes.
///
/// # Errors
/// [`HandshakeError::ForbiddenOrigin`] (403), also for repeated `Origin` headers.
fn check_origin(
    headers: &http::HeaderMap,
    list: &super::origin::AllowedOrigins,
) -> Result<(), HandshakeError> {
    let mut values = headers.get_all(http::header::ORIGIN).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(()),
        (Some(v), None) => match v.to_str() {
            Ok(o) if list.allows(o) => Ok(()),
            _ => Err(HandshakeError::ForbiddenOrigin(format!(
                "origin {:?} is not allowed to open WebSocket sessions here",
                String::from_utf8_lossy(v.as_bytes())
            ))),
        },
        (Some(_), Some(_)) => Err(HandshakeError::ForbiddenOrigin(
            "more than one Origin header".into(),
        )),
    }
}
