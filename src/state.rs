//! The agent's state, shared by the server, the sessions and admin: the routing table, the
//! session table, registry health, metrics, the settings a reload may change, and the
//! shutdown signals.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::RegistryStatus;
use crate::relay::RelayConfig;
use crate::routing::RouteTable;
use crate::session::handshake::UpstreamSettings;
use crate::session::table::SessionTable;
use crate::ws::leg;

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
    /// The last sessions that ended (`admin.recent`).
    pub closed_sessions: crate::session::recent::Recent<crate::session::recent::ClosedSession>,
    /// The last refused upgrades (`admin.recent`).
    pub refused_upgrades: crate::session::recent::Recent<crate::session::recent::RefusedUpgrade>,
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
    /// `[routing]`'s instance choice.
    pub routing: RoutingSettings,
    /// `[handshake]`: origin allow-list and failure answer.
    pub handshake: crate::config::HandshakeConfig,
    /// `[deflate]`: permessage-deflate on each leg.
    pub deflate: crate::config::DeflateConfig,
    /// HTTP/2 connection limits (`tls.http2*`); `None` when HTTP/2 is off.
    pub http2: Option<crate::config::Http2Limits>,
}

/// How a session's instance is chosen (`routing.instance_id_header`, `routing.sticky*`).
#[derive(Clone)]
pub struct RoutingSettings {
    /// Honour `X-InstanceId`.
    pub instance_id_header: bool,
    /// The sticky table; kept across reloads that do not change `routing.sticky*`.
    pub sticky: Option<Arc<crate::routing::sticky::StickyTable>>,
}

/// One of the `limits.max_connections` permits, held by a connection's task and, once it is
/// upgraded, by its session's task: released (and `wsrelay_connections_open` lowered) when
/// both have ended.
pub struct ConnectionSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl ConnectionSlot {
    /// Takes `permit` and counts the connection in `open` (`wsrelay_connections_open`).
    pub fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        open: &prometheus_client::metrics::gauge::Gauge,
    ) -> ConnectionSlot {
        open.inc();
        ConnectionSlot {
            _permit: permit,
            open: open.clone(),
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}
