//! The routing table: Eureka instance metadata → WebSocket routes, and request path → upstream.
//!
//! Rules follow Zowe API Mediation Layer's route metadata
//! (`apiml.routes.<name>.gatewayUrl` / `apiml.routes.<name>.serviceUrl`):
//!
//! - a route is a pair of keys with exactly four dot-separated parts, paired by `<name>`;
//! - `gatewayUrl` is normalised by trimming whitespace and one leading and one trailing `/`
//!   (`"/ws/v1/"` → `ws/v1`); `serviceUrl` gets a leading `/` (empty → `/`);
//! - which routes accept WebSocket upgrades is [`RouteScope`] (`routing.websocket_routes`):
//!   by default only routes whose gatewayUrl is `ws` or starts with `ws/`; with `all`, every
//!   route, as the Zowe v3 gateway (Spring Cloud Gateway) does;
//! - routes are merged across all instances of a service (first definition of a gatewayUrl wins);
//! - a request path is either `/{serviceId}/{gatewayUrl}/{path}` (current API ML) or
//!   `/{gatewayUrl}/{serviceId}/{path}` (v1); the longest matching gatewayUrl wins and serviceId
//!   matching is case-insensitive;
//! - the upstream is `{ws|wss}://{hostName}:{port}{serviceUrl}/{path}?{query}`: `wss` and the
//!   secure port when `securePort` is enabled, otherwise `ws` and `port`; only `UP` instances
//!   (after `overriddenStatus`) are routable.
//!
//! [`RouteTable::build`] is pure; the table is published with one `ArcSwap::store` by the
//! registry source and loaded once per handshake.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{FailoverMode, RouteScope};
use crate::registry::{Snapshot, Status};

pub mod sticky;

/// URL scheme of an upstream instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain WebSocket over `port`.
    Ws,
    /// WebSocket over TLS on `securePort`.
    Wss,
}

impl Scheme {
    /// `"ws"` or `"wss"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

/// One routable instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Eureka `instanceId`.
    pub instance_id: String,
    /// Host to connect to (Eureka `hostName`, `:port` suffix removed); also the TLS server name.
    pub host: String,
    /// TCP port (`securePort` for wss, `port` for ws).
    pub port: u16,
    /// `ws` or `wss`.
    pub scheme: Scheme,
    /// Effective Eureka status (only `UP` endpoints are routable).
    pub status: Status,
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One WebSocket route of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The `<name>` part of the metadata keys, e.g. `ws_v1`.
    pub name: String,
    /// Normalised gateway URL, e.g. `ws/v1` (no leading or trailing `/`).
    pub gateway_url: String,
    /// Service URL with a leading `/`, e.g. `/discoverableclient/ws`.
    pub service_url: String,
    /// Session failover chosen by the service for this route (metadata
    /// `apiml.routes.<name>.failover`: `reconnect` or `close`, case-insensitive); `None` when
    /// absent or unrecognised, then the agent's `failover.mode` applies (issue 6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverMode>,
    /// Browser origins allowed on this route (metadata `apiml.routes.<name>.allowedOrigins`,
    /// comma-separated; entries that do not parse are left out); wins over
    /// `handshake.allowed_origins`. Shown as the list in force (`allowedOrigins`).
    #[serde(
        rename = "allowedOrigins",
        skip_serializing_if = "Option::is_none",
        serialize_with = "origins_list"
    )]
    pub origins: Option<crate::session::origin::AllowedOrigins>,
    /// How a failed handshake on this route is answered (metadata
    /// `apiml.routes.<name>.handshakeFailure`: `status` or `close`); wins over
    /// `handshake.failure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_failure: Option<crate::config::FailureAnswer>,
}

fn origins_list<S: serde::Serializer>(
    origins: &Option<crate::session::origin::AllowedOrigins>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(origins.iter().flat_map(|o| o.to_strings()))
}

/// The routing table's side of the registry: builds a [`RouteTable`] from each snapshot off to
/// the side, compares it with the current one, and stores it with one `ArcSwap::store` only
/// when something changed (wired to the sources in `lib.rs`).
pub struct TableSink {
    /// The table read by handshakes.
    pub routes: Arc<arc_swap::ArcSwap<RouteTable>>,
    /// `upstream.insecure_skip_verify`: each new table with `wss` instances is logged as a
    /// warning.
    pub insecure_upstream: bool,
    /// `routing.websocket_routes` (applied at start; a reload asks for a restart).
    pub scope: RouteScope,
}

impl crate::registry::SnapshotSink for TableSink {
    fn take(&self, snapshot: &Snapshot, source: &str) -> bool {
        let table = RouteTable::build_scoped(snapshot, self.scope);
        if **self.routes.load() == table {
            return false;
        }
        let services = table.len();
        if self.insecure_upstream {
            let wss = table
                .services()
                .iter()
                .flat_map(|s| s.instances.iter())
                .filter(|e| e.scheme == Scheme::Wss)
                .count();
            if wss > 0 {
                tracing::warn!(wss_instances = wss, "routing to wss instances whose certificates are NOT verified (upstream.insecure_skip_verify)");
            }
        }
        let up: usize = table.services().iter().map(|s| s.up_count()).sum();
        self.routes.store(Arc::new(table));
        tracing::info!(
            source,
            applications = snapshot.applications.len(),
            instances = snapshot.instance_count(),
            ws_services = services,
            ws_instances_up = up,
            "routing table updated"
        );
        true
    }
}

/// A service (Eureka application) with WebSocket routes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Eureka application name as registered (usually upper case).
    pub service_id: String,
    /// Routes, longest gatewayUrl first.
    pub routes: Vec<Route>,
    /// Every instance with a usable port, in registry order (UP or not).
    pub instances: Vec<Endpoint>,
    /// The client-certificate headers the service gets when its metadata says
    /// `apiml.authentication.scheme: x509` (limited by `apiml.authentication.headers`); see
    /// [`crate::session::x509`]. Read from the first instance that has the scheme key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509: Option<crate::session::x509::X509Headers>,
    /// Indexes into `instances` of the UP ones.
    #[serde(skip)]
    up: Vec<usize>,
    /// Round-robin cursor (see [`Service::candidates`]).
    #[serde(skip)]
    cursor: AtomicUsize,
}

impl PartialEq for Service {
    fn eq(&self, other: &Self) -> bool {
        self.service_id == other.service_id
            && self.routes == other.routes
            && self.instances == other.instances
            && self.x509 == other.x509
    }
}

impl Service {
    /// Number of routable (UP) instances.
    pub fn up_count(&self) -> usize {
        self.up.len()
    }

    /// Up to `max` UP instances in the order to try them: round-robin over the UP instances
    /// (each call starts one further), then the following ones as failover candidates.
    pub fn candidates(&self, max: usize) -> Candidates<'_> {
        self.candidates_from(None, max)
    }

    /// As [`Service::candidates`], with the UP instance `preferred` (a sticky session's) first
    /// when there is one; then the round robin over the others. A `preferred` instance that
    /// is unknown or not UP is ignored (the round robin alone decides, as Zowe's
    /// `DeterministicLoadBalancer` does when the cached instance is gone).
    pub fn candidates_from(&self, preferred: Option<&str>, max: usize) -> Candidates<'_> {
        let first = preferred.and_then(|id| {
            self.up
                .iter()
                .copied()
                .find(|&j| self.instances.get(j).is_some_and(|e| e.instance_id == id))
        });
        let n = self.up.len();
        let start = if n == 0 {
            0
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed) % n
        };
        Candidates {
            service: self,
            first,
            first_pending: true,
            start,
            next: 0,
            left: max.min(n),
        }
    }

    /// Exactly the instance `instance_id` (UP or not), as candidates; none when unknown.
    pub fn only(&self, instance_id: &str) -> Candidates<'_> {
        let first = self
            .instances
            .iter()
            .position(|e| e.instance_id == instance_id);
        Candidates {
            service: self,
            first,
            first_pending: true,
            start: 0,
            next: self.up.len(),
            left: usize::from(first.is_some()),
        }
    }

    /// The instance registered as `instance_id` (compared exactly, as Zowe v3's
    /// `DeterministicLoadBalancer.checkInstanceIdHeader`), UP or not.
    pub fn instance(&self, instance_id: &str) -> Option<&Endpoint> {
        self.instances.iter().find(|e| e.instance_id == instance_id)
    }
}

/// The instances a session tries, in order (see [`Service::candidates_from`]): a plain
/// iterator over the service's indexes, without allocating.
#[derive(Debug)]
pub struct Candidates<'a> {
    service: &'a Service,
    /// Index into `instances` of the preferred instance: given first, skipped afterwards.
    first: Option<usize>,
    /// Whether `first` is still to be given.
    first_pending: bool,
    /// Round-robin start within `up`.
    start: usize,
    /// Next offset from `start` within `up`.
    next: usize,
    /// Instances still to give.
    left: usize,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Endpoint;

    fn next(&mut self) -> Option<&'a Endpoint> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.first_pending {
            self.first_pending = false;
            if let Some(j) = self.first {
                return self.service.instances.get(j);
            }
        }
        let up = &self.service.up;
        while self.next < up.len() {
            let j = up.get((self.start + self.next) % up.len()).copied();
            self.next += 1;
            if let Some(j) = j.filter(|&j| Some(j) != self.first) {
                return self.service.instances.get(j);
            }
        }
        None
    }
}

/// Why a request path did not resolve to a route. Maps to an HTTP status in `close`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The path tries to climb out of the service URL (`..`, `%2e%2e`), has an encoded `/` or
    /// `\`, or a broken percent escape (HTTP 400).
    #[error("path rejected: {0}")]
    BadPath(&'static str),
    /// No service and gateway URL match the path (HTTP 404).
    #[error("no WebSocket route matches this path")]
    NoRoute,
}

/// A resolved request: the service, the route, and the upstream path with the query kept.
#[derive(Debug)]
pub struct Resolved {
    /// The matched service (holds the instances and the balancer cursor).
    pub service: Arc<Service>,
    /// Index into `service.routes`.
    pub route: usize,
    /// `{serviceUrl}/{path}` with exactly one `/` at the join, plus `?query` when the client
    /// sent one.
    pub upstream_path: String,
}

impl Resolved {
    /// The matched route.
    pub fn route(&self) -> Option<&Route> {
        self.service.routes.get(self.route)
    }
}

/// The immutable routing table built from one registry snapshot.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Services by lower-cased service id.
    services: HashMap<String, Arc<Service>>,
    /// Largest number of `/`-separated segments in any gatewayUrl (bounds the v1 form search).
    max_gateway_segments: usize,
}

impl PartialEq for RouteTable {
    fn eq(&self, other: &Self) -> bool {
        self.services.len() == other.services.len()
            && self
                .services
                .iter()
                .all(|(k, v)| other.services.get(k).is_some_and(|o| **o == **v))
    }
}

/// The metadata of one route of one instance, paired by route name while building.
#[derive(Default)]
struct PendingRoute<'s> {
    name: &'s str,
    gateway_url: Option<&'s str>,
    service_url: Option<&'s str>,
    failover: Option<&'s str>,
    allowed_origins: Option<&'s str>,
    handshake_failure: Option<&'s str>,
}

/// The prefix every route metadata key starts with.
const ROUTE_KEY_PREFIX: &str = "apiml.routes.";

/// Metadata keys `apiml.routes.<name>.<kind>` → `(name, kind)`; exactly four parts.
fn route_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(ROUTE_KEY_PREFIX)?;
    let (name, kind) = rest.split_once('.')?;
    if name.is_empty() || kind.contains('.') {
        return None;
    }
    Some((name, kind))
}

/// `" /ws/v1/ "` → `ws/v1`: trim whitespace, then one leading and one trailing `/`.
pub fn normalize_gateway_url(s: &str) -> String {
    trim_gateway_url(s).to_owned()
}

/// [`normalize_gateway_url`] without allocating.
fn trim_gateway_url(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix('/').unwrap_or(s);
    s.strip_suffix('/').unwrap_or(s)
}

/// `"discoverableclient/ws"` → `/discoverableclient/ws`; empty → `/`.
pub fn normalize_service_url(s: &str) -> String {
    let s = s.trim();
    if s.starts_with('/') {
        s.to_owned()
    } else {
        format!("/{s}")
    }
}

impl RouteTable {
    /// Builds the table of `ws/...` routes ([`RouteScope::WsPrefixed`]) from a snapshot; see
    /// [`RouteTable::build_scoped`].
    pub fn build(snapshot: &Snapshot) -> RouteTable {
        Self::build_scoped(snapshot, RouteScope::WsPrefixed)
    }

    /// Builds the table from a snapshot with the routes `scope` admits. Pure: no I/O, no
    /// logging. Services without any such route are left out; services with routes but no UP
    /// instance stay in (so a request gets 503, not 404).
    pub fn build_scoped(snapshot: &Snapshot, scope: RouteScope) -> RouteTable {
        let mut services: HashMap<String, Arc<Service>> =
            HashMap::with_capacity(snapshot.applications.len());
        let mut max_gateway_segments = 0;
        // Route keys of one instance, paired by name. Reused across instances.
        let mut pending: Vec<PendingRoute<'_>> = Vec::new();
        for app in &snapshot.applications {
            let mut routes: Vec<Route> = Vec::new();
            let mut instances = Vec::with_capacity(app.instances.len());
            let mut up = Vec::with_capacity(app.instances.len());
            for inst in &app.instances {
                // Pair the keys by route name. Metadata is a BTreeMap (ordered), so the route
                // keys are one contiguous range starting at the prefix.
                pending.clear();
                let range = inst
                    .metadata
                    .range::<str, _>((Bound::Included(ROUTE_KEY_PREFIX), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(ROUTE_KEY_PREFIX));
                for (k, v) in range {
                    let Some((name, kind)) = route_key(k) else {
                        continue;
                    };
                    let slot = match pending.iter().position(|p| p.name == name) {
                        Some(i) => i,
                        None => {
                            pending.push(PendingRoute {
                                name,
                                ..PendingRoute::default()
                            });
                            pending.len() - 1
                        }
                    };
                    if let Some(p) = pending.get_mut(slot) {
                        let v = Some(&**v);
                        match kind {
                            "gatewayUrl" => p.gateway_url = v,
                            "serviceUrl" => p.service_url = v,
                            "failover" => p.failover = v,
                            "allowedOrigins" => p.allowed_origins = v,
                            "handshakeFailure" => p.handshake_failure = v,
                            _ => {}
                        }
                    }
                }
                for p in &pending {
                    let (Some(g), Some(s)) = (p.gateway_url, p.service_url) else {
                        continue;
                    };
                    let gateway_url = trim_gateway_url(g);
                    if !scope.admits(gateway_url)
                        || routes.iter().any(|r| r.gateway_url == gateway_url)
                    {
                        continue;
                    }
                    routes.push(Route {
                        name: p.name.to_owned(),
                        gateway_url: gateway_url.to_owned(),
                        service_url: normalize_service_url(s),
                        failover: p.failover.and_then(FailoverMode::parse),
                        origins: p
                            .allowed_origins
                            .map(crate::session::origin::AllowedOrigins::parse_metadata),
                        handshake_failure: p
                            .handshake_failure
                            .and_then(crate::config::FailureAnswer::parse),
                    });
                }
                let (scheme, port) = if inst.secure_port.enabled && inst.secure_port.port != 0 {
                    (Scheme::Wss, inst.secure_port.port)
                } else if inst.port.enabled && inst.port.port != 0 {
                    (Scheme::Ws, inst.port.port)
                } else {
                    continue;
                };
                let host = inst.host();
                if host.is_empty() {
                    continue;
                }
                // `status` alone decides, as in Netflix's `Application._shuffleAndStoreInstances`;
                // `overriddenStatus` is the server's input to `status`, not a second opinion.
                let status = inst.status;
                if status == Status::Up {
                    up.push(instances.len());
                }
                instances.push(Endpoint {
                    instance_id: inst.instance_id.clone(),
                    host: host.to_owned(),
                    port,
                    scheme,
                    status,
                });
            }
            if routes.is_empty() {
                continue;
            }
            routes.sort_by(|a, b| {
                b.gateway_url
                    .len()
                    .cmp(&a.gateway_url.len())
                    .then(a.gateway_url.cmp(&b.gateway_url))
            });
            for r in &routes {
                max_gateway_segments = max_gateway_segments.max(r.gateway_url.split('/').count());
            }
            let x509 = app
                .instances
                .iter()
                .find_map(|i| i.metadata.get("apiml.authentication.scheme"))
                .filter(|scheme| scheme.trim().eq_ignore_ascii_case("x509"))
                .map(|_| {
                    app.instances
                        .iter()
                        .find_map(|i| i.metadata.get("apiml.authentication.headers"))
                        .map_or(crate::session::x509::X509Headers::ALL, |h| {
                            crate::session::x509::X509Headers::parse(h)
                        })
                });
            let key = app.name.to_ascii_lowercase();
            if let Some(existing) = services.get(&key) {
                // The same application listed twice (fragments): keep the first.
                if !existing.routes.is_empty() {
                    continue;
                }
            }
            services.insert(
                key,
                Arc::new(Service {
                    service_id: app.name.clone(),
                    routes,
                    instances,
                    x509,
                    up,
                    cursor: AtomicUsize::new(0),
                }),
            );
        }
        RouteTable {
            services,
            max_gateway_segments,
        }
    }

    /// Number of services with WebSocket routes.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// True when no service has a WebSocket route.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Services sorted by service id (for display).
    pub fn services(&self) -> Vec<&Arc<Service>> {
        let mut v: Vec<_> = self.services.values().collect();
        v.sort_by(|a, b| a.service_id.cmp(&b.service_id));
        v
    }

    fn service(&self, id: &str) -> Option<&Arc<Service>> {
        // Case-insensitive without allocating for ordinary ids.
        let mut buf = [0u8; 128];
        if id.len() <= buf.len() && !id.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.services.get(id);
        }
        if let Some(slot) = buf.get_mut(..id.len()) {
            slot.copy_from_slice(id.as_bytes());
            slot.make_ascii_lowercase();
            let lower = std::str::from_utf8(slot).ok()?;
            return self.services.get(lower);
        }
        self.services.get(&id.to_ascii_lowercase())
    }

    /// Resolves a request path (and optional query) to a service, route and upstream path.
    ///
    /// Tries `/{serviceId}/{gatewayUrl}/{path}` first, then `/{gatewayUrl}/{serviceId}/{path}`;
    /// within each form the longest gatewayUrl wins.
    ///
    /// # Errors
    /// [`LookupError::BadPath`] for traversal attempts and bad escapes (checked before any
    /// lookup), [`LookupError::NoRoute`] when nothing matches.
    pub fn resolve(&self, path: &str, query: Option<&str>) -> Result<Resolved, LookupError> {
        check_path(path)?;
        let rest = path.strip_prefix('/').unwrap_or(path);

        // Form 1: /{serviceId}/{gatewayUrl}/{path}
        let (first, after) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(svc) = self.service(first) {
            for (i, r) in svc.routes.iter().enumerate() {
                if let Some(tail) = strip_segments(after, &r.gateway_url) {
                    return Ok(resolved(svc, i, tail, query));
                }
            }
        }

        // Form 2: /{gatewayUrl}/{serviceId}/{path}, longest gatewayUrl first.
        let seg_ends: Vec<usize> = rest
            .match_indices('/')
            .map(|(i, _)| i)
            .take(self.max_gateway_segments + 1)
            .collect();
        for k in (1..=self.max_gateway_segments.min(seg_ends.len())).rev() {
            let Some(&g_end) = seg_ends.get(k - 1) else {
                continue;
            };
            let gateway = &rest[..g_end];
            let after_g = &rest[g_end + 1..];
            let (sid, tail) = after_g.split_once('/').unwrap_or((after_g, ""));
            if let Some(svc) = self.service(sid) {
                if let Some(i) = svc.routes.iter().position(|r| r.gateway_url == gateway) {
                    return Ok(resolved(svc, i, tail, query));
                }
            }
        }
        Err(LookupError::NoRoute)
    }
}

/// `after` = `"ws/v1/x/y"`, `prefix` = `"ws/v1"` → `Some("x/y")`; matches whole segments only.
/// An empty `prefix` (gatewayUrl `/`, only under [`RouteScope::All`]) matches everything.
fn strip_segments<'a>(after: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(after);
    }
    let tail = after.strip_prefix(prefix)?;
    if tail.is_empty() {
        Some("")
    } else {
        tail.strip_prefix('/')
    }
}

fn resolved(svc: &Arc<Service>, route: usize, tail: &str, query: Option<&str>) -> Resolved {
    let service_url = svc
        .routes
        .get(route)
        .map_or("/", |r| r.service_url.as_str());
    let mut p = String::with_capacity(
        service_url.len() + tail.len() + query.map_or(0, |q| q.len() + 1) + 1,
    );
    p.push_str(service_url);
    if !tail.is_empty() {
        if !p.ends_with('/') {
            p.push('/');
        }
        p.push_str(tail.strip_prefix('/').unwrap_or(tail));
    }
    if let Some(q) = query {
        p.push('?');
        p.push_str(q);
    }
    Resolved {
        service: Arc::clone(svc),
        route,
        upstream_path: p,
    }
}

/// Rejects paths a service could read as something else than the gateway did:
///
/// - a `..` segment, plain or percent-encoded (`%2e%2e`, `.%2E`), also with path parameters
///   (`..;x`: Tomcat, which most Zowe services run on, drops `;...` and then climbs);
/// - an encoded `/` or `\` (`%2f`, `%5c`) and a raw `\` (some servers treat it as `/`);
/// - an encoded `%` (`%25`: double encoding, `%252e%252e` is `%2e%2e` after one decode);
/// - an encoded control character (`%00`-`%1f`, `%7f`: NUL truncation, header splitting);
/// - a broken percent escape, and percent-escapes that do not decode to UTF-8 (overlong
///   forms such as `%c0%ae` decode to `.` on lenient decoders);
/// - a raw `?` or `#`: a request path never holds one (the query is passed apart), and in
///   the upstream URL it would end the path early, so `x/%2e%2e?y` would climb there.
///
/// The same characters are refused by Spring Security's `StrictHttpFirewall`, which the Zowe
/// API ML gateway applies. Everything else (including `%20` and UTF-8 escapes) passes as is.
fn check_path(path: &str) -> Result<(), LookupError> {
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
                let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(LookupError::BadPath("broken percent escape"));
                };
                let v = (h * 16 + l) as u8;
                match v {
                    b'/' | b'\\' => return Err(LookupError::BadPath("encoded path separator")),
                    b'%' => return Err(LookupError::BadPath("encoded '%' (double encoding)")),
                    0x00..=0x1f | 0x7f => {
                        return Err(LookupError::BadPath("encoded control character"))
                    }
                    _ => decoded.push(v),
                }
                i += 3;
            }
            b'\\' => return Err(LookupError::BadPath("backslash in path")),
            b'?' | b'#' => return Err(LookupError::BadPath("'?' or '#' in the path")),
            0x00..=0x1f | 0x7f => return Err(LookupError::BadPath("control character")),
            _ => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let text = std::str::from_utf8(&decoded)
        .map_err(|_| LookupError::BadPath("not UTF-8 after percent-decoding"))?;
    // `/` cannot be encoded (refused above), so decoded segments are the raw segments.
    for seg in text.split('/') {
        let name = seg.split(';').next().unwrap_or(seg);
        if name == ".." {
            return Err(LookupError::BadPath("'..' segment"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
