//! Session failover (issue 6): the proxy's side of [`relay::Reconnect`](crate::relay::Reconnect).
//!
//! When the relay reports that a session's service leg ended abnormally, [`SessionFailover`]
//! looks the client's path up again in the current routing table (so instances registered
//! since the session started count), and tries the live (`UP`) instances of the service in
//! round-robin order, skipping every instance that already failed for this session. The new
//! upstream request has the same path, query, forwarded headers and, when one was
//! negotiated, offers exactly the negotiated subprotocol (an instance that does not accept it
//! is skipped). Each switch updates the session's entry in `/application/websockets`
//! (`instanceId`, `serviceUrl`, `failovers`), is logged and is counted in
//! `wsrelay_session_failovers_total`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderMap;

use super::handshake::{self, ClientSide, Ws};
use crate::close::Ending;
use crate::config::FailoverMode;
use crate::metrics::FailoverLabels;
use crate::relay::{Reconnect, Refused};
use crate::routing::sticky::StickyTable;
use crate::session::table::{SessionInfo, Upstream};
use crate::state::{Settings, Shared};

/// The failover state of one session (see the module doc).
pub struct SessionFailover {
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    session: Arc<SessionInfo>,
    /// Whether the session's route (or the agent's default) says `reconnect`.
    enabled: bool,
    /// Instance ids that failed for this session (never tried again).
    failed: Vec<String>,
    /// The path and query the client asked for.
    path: String,
    query: Option<String>,
    /// The client's request headers (forwarded as on the first connect).
    headers: HeaderMap,
    /// The negotiated subprotocol, offered alone to the next instance.
    offered: Vec<String>,
    client: ClientSide,
    /// The session's span: failover lines are logged in it, and its `instance` follows a
    /// switch.
    span: tracing::Span,
    /// The instance the last `reconnect` connected to.
    next: Option<Upstream>,
    /// The session's sticky slot (`routing.sticky`): its instance is tried first while UP,
    /// and a switch re-sticks the slot to the new instance.
    sticky: Option<(Arc<StickyTable>, u64)>,
    /// The client leg agreed to permessage-deflate (the next instance is offered it as the
    /// first was, by `deflate.service`).
    client_deflate: bool,
    /// The client leg can send compressed messages as they are, so the next service leg
    /// hands its compressed messages on without inflating them.
    client_takes_compressed: bool,
}

impl SessionFailover {
    /// The failover state of a session on a route whose mode is `mode` (route metadata, or the
    /// agent's `failover.mode`). `headers` are the client's request headers; `subprotocol` the
    /// one the first instance chose.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        settings: Arc<Settings>,
        session: Arc<SessionInfo>,
        mode: FailoverMode,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        subprotocol: Option<String>,
        client: ClientSide,
        span: tracing::Span,
    ) -> SessionFailover {
        SessionFailover {
            shared,
            settings,
            session,
            enabled: mode == FailoverMode::Reconnect,
            span,
            failed: Vec::new(),
            path,
            query,
            headers,
            offered: subprotocol.into_iter().collect(),
            client,
            next: None,
            sticky: None,
            client_deflate: false,
            client_takes_compressed: false,
        }
    }

    /// Records the client leg's permessage-deflate (see the fields).
    pub fn with_deflate(mut self, client: Option<&crate::ws::deflate::Codec>) -> SessionFailover {
        self.client_deflate = client.is_some();
        self.client_takes_compressed =
            client.is_some_and(crate::ws::deflate::Codec::can_send_compressed);
        self
    }

    /// Sets the session's sticky slot (see the field).
    pub fn with_sticky(mut self, sticky: Option<(Arc<StickyTable>, u64)>) -> SessionFailover {
        self.sticky = sticky;
        self
    }

    fn count(&self, result: &'static str) {
        let labels = FailoverLabels {
            service: self.session.service_id.clone(),
            result,
        };
        self.shared
            .metrics
            .proxy
            .failovers
            .get_or_create(&labels)
            .inc();
    }
}

impl Reconnect<Ws> for SessionFailover {
    fn may_switch(&self) -> bool {
        // The session's `failovers` counter is the number of switches done so far.
        self.enabled
            && self.session.failovers.load(Ordering::Relaxed) < self.settings.failover.max_attempts
    }

    async fn reconnect(&mut self) -> Result<Ws, Refused> {
        let current = self.session.upstream().instance_id;
        if !self.failed.contains(&current) {
            self.failed.push(current);
        }
        let table = self.shared.routes.load_full();
        let resolved = table
            .resolve(&self.path, self.query.as_deref())
            .map_err(|e| {
                Refused::from(Ending::NoInstanceLeft(&format!("the route is gone: {e}")))
            })?;
        let service = &resolved.service;
        let preferred = self.sticky.as_ref().and_then(|(t, slot)| t.get(*slot));
        let candidates: Vec<_> = service
            .candidates_from(preferred.as_deref(), usize::MAX)
            .filter(|ep| !self.failed.contains(&ep.instance_id))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Err(Ending::NoInstanceLeft(&format!(
                "no other live instance of {}",
                service.service_id
            ))
            .into());
        }
        // Made again from the client's certificate: the service's metadata may have changed.
        let identity = handshake::Identity::of(service, &self.client)
            .map_err(|e| Refused::from(Ending::FailoverFailed(&e.to_string())))?;
        let mut last = String::new();
        let tries = candidates.len();
        for (n, ep) in candidates.into_iter().enumerate() {
            let fwd = handshake::Forward {
                path: &resolved.upstream_path,
                headers: &self.headers,
                offered: &self.offered,
                client: &self.client,
                identity: &identity,
                deflate: crate::ws::deflate::offers_service(
                    &self.settings.deflate,
                    self.client_deflate,
                )
                .then_some(&self.settings.deflate),
            };
            let attempt = Box::pin(handshake::connect(
                &ep,
                &service.service_id,
                &fwd,
                &self.settings.upstream,
            ))
            .await;
            let cause = match attempt {
                Ok(c)
                    if c.protocol.as_ref().map(|p| p.as_bytes())
                        == self.offered.first().map(|p| p.as_bytes()) =>
                {
                    self.next = Some(Upstream {
                        instance_id: ep.instance_id.clone(),
                        service_url: handshake::upstream_url(&ep, &resolved.upstream_path),
                        local_addr: c.local_addr,
                    });
                    let mut ws = c.ws;
                    ws.forward_compressed(self.client_takes_compressed);
                    return Ok(ws);
                }
                Ok(_) => "it did not accept the session's subprotocol".to_owned(),
                Err(e) => e.to_string(),
            };
            if n + 1 < tries {
                let _in_session = self.span.enter();
                tracing::warn!(attempted = %ep.instance_id, cause = %cause, "failover attempt failed; trying the next instance");
            } else {
                // The give-up line that follows carries this cause.
                let _in_session = self.span.enter();
                tracing::debug!(attempted = %ep.instance_id, cause = %cause, "failover attempt failed; no other instance to try");
            }
            self.failed.push(ep.instance_id.clone());
            last = cause;
        }
        Err(Ending::FailoverFailed(&format!(
            "no instance of {} accepted: {last}",
            service.service_id
        ))
        .into())
    }

    fn switched(&mut self, cause: &str, buffered_messages: usize, buffered_bytes: usize) {
        let Some(to) = self.next.take() else {
            return;
        };
        let to_instance = to.instance_id.clone();
        if let Some((table, slot)) = &self.sticky {
            table.set(*slot, &to_instance);
        }
        let from = self.session.switch_upstream(to);
        self.count("switched");
        self.span
            .record("instance", tracing::field::display(&to_instance));
        let _in_session = self.span.enter();
        tracing::info!(
            from = %from.instance_id, to = %to_instance, cause = %cause,
            buffered_messages, buffered_bytes,
            failovers = self.session.failovers.load(Ordering::Relaxed),
            "session failed over to another instance"
        );
    }

    fn gave_up(&mut self, cause: &str, code: u16, reason: &str) {
        self.count("failed");
        let _in_session = self.span.enter();
        tracing::warn!(
            cause = %cause, close_code = code,
            reason = %reason, "session failover failed"
        );
    }
}
