//! Eureka HTTP source: full and delta fetches, hash reconciliation, server failover, backoff
//! and the last-known-good cache, as Netflix's `DiscoveryClient` does them.
//!
//! * **Fetching** (`DiscoveryClient.fetchRegistry`): the first fetch is a full one
//!   (`GET apps/`); after that `GET apps/delta` every refresh interval. A delta is applied in
//!   payload order ([`apply_delta`]: `ADDED`/`MODIFIED` upsert by instance id, `DELETED`
//!   removes, an application left without instances disappears), then the reconcile hash of
//!   the local, unfiltered registry ([`reconcile_hash`]) is compared with the delta's
//!   `apps__hashcode`; on a mismatch, or when the server answers the delta with 403/404
//!   (`disableDelta`), a full fetch replaces the local registry. `registry.full_fetch_only`
//!   and `registry.vip` (`GET vips/{vip}`) always fetch in full.
//! * **Failover** (`RetryableEurekaHttpClient`): at most [`MAX_ATTEMPTS`] servers per request;
//!   the server that answered last is kept while it works; failing servers are quarantined until
//!   at least 66 % of them are, then the quarantine is cleared. Servers are ordered once at
//!   start: those of `registry.zone` first, each group shuffled (`ZoneAffinityClusterResolver`).
//!   A server fails a request when it cannot be reached, times out, answers an unexpected
//!   status, or sends a payload that does not decode.
//! * **Backoff** (`TimedSupervisorTask`): after a refresh that timed out, the delay doubles up to
//!   `refresh_interval × registry.backoff_bound`; any other outcome resets it ([`next_delay`]).
//! * **Cache**: after each successful fetch the registry is written atomically to
//!   `registry.cache` (see [`super::cache`]); when no server answers at start, it is loaded so
//!   the agent can route while discovery is down (logged, and `from_cache` in the health).
//!
//! Requests ask for `application/json` or `application/xml` per `registry.format` (Eureka
//! answers XML unless asked for JSON) and accept gzip. Credentials in a service URL
//! (`https://user:pass@host/eureka/`) are sent as HTTP basic auth and never appear in logs,
//! errors or metrics; a client certificate (`registry.client_cert`/`client_key`) is presented
//! for mutual TLS, as Zowe's discovery service requires.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use http::{header, Method};

use super::body::{BodyError, Collector};
use super::{decode, ActionType, Application, Publisher, Snapshot};
use crate::config::{EurekaOptions, RegistryConfig, WireFormat};
use crate::metrics::{OutcomeLabel, ServerLabel};

/// Servers tried per request (Eureka's `RetryableEurekaHttpClient` default of 3).
pub const MAX_ATTEMPTS: usize = 3;

/// Fraction (in percent) of quarantined servers at which the quarantine is cleared (Eureka's
/// `retryableClientQuarantineRefreshPercentage`, 0.66).
const QUARANTINE_REFRESH_PERCENT: usize = 66;

/// Why a request to one Eureka server failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connect, timeout, TLS or protocol failure.
    #[error("{server}: {message}")]
    Transport {
        /// The server URL with credentials removed.
        server: String,
        /// The cause.
        message: String,
        /// Whether the request timed out (drives the backoff).
        timed_out: bool,
    },
    /// The server answered with a status the request does not accept.
    #[error("{server}: HTTP {status}")]
    Status {
        /// The server URL with credentials removed.
        server: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than `registry.max_payload_size`.
    #[error("{server}: registry payload over the limit of {max} bytes")]
    TooLarge {
        /// The server URL with credentials removed.
        server: String,
        /// The limit in bytes.
        max: usize,
    },
    /// The body is not a Eureka payload.
    #[error("{server}: {source}")]
    Decode {
        /// The server URL with credentials removed.
        server: String,
        /// The decoder's error.
        source: super::DecodeError,
    },
}

impl FetchError {
    /// Whether this failure was a timeout.
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            FetchError::Transport {
                timed_out: true,
                ..
            }
        )
    }
}

/// Every server tried for one request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllFailed {
    /// One message per server tried (credentials removed), in order.
    pub errors: Vec<String>,
    /// Whether any of the attempts timed out.
    pub timed_out: bool,
}

impl fmt::Display for AllFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            f.write_str("no Eureka server to try")
        } else {
            write!(f, "every Eureka server failed: {}", self.errors.join("; "))
        }
    }
}

impl std::error::Error for AllFailed {}

/// `https://user:pass@host/eureka/` → `https://host/eureka/` (for logs and errors).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_owned(),
    }
}

/// Splits `user:pass@` out of a URL: (URL without credentials, Some((user, pass))).
fn credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let clean = match path {
        Some(p) => format!("{scheme}://{host}/{p}"),
        None => format!("{scheme}://{host}"),
    };
    (clean, Some((user.to_owned(), pass.to_owned())))
}

/// Percent-encodes one URL path segment (RFC 3986 `pchar` kept as is).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The order servers are tried in, as indexes into `zones` (one zone name per server): those
/// of `my_zone` first, then the others; each group shuffled with `rng` (Eureka's
/// `ZoneAffinityClusterResolver` with `ResolverUtils.randomize`).
pub fn server_order(
    zones: &[String],
    my_zone: Option<&str>,
    rng: &mut fastrand::Rng,
) -> Vec<usize> {
    let (mut near, mut far): (Vec<usize>, Vec<usize>) = (0..zones.len())
        .partition(|&i| my_zone.is_some_and(|z| zones.get(i).is_some_and(|s| s == z)));
    rng.shuffle(&mut near);
    rng.shuffle(&mut far);
    near.extend(far);
    near
}

/// Failover state of one client (`RetryableEurekaHttpClient`): the server in use and the
/// quarantined ones.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    order: Vec<usize>,
    current: Option<usize>,
    quarantine: BTreeSet<usize>,
}

impl Failover {
    /// Failover over servers tried in `order` (see [`server_order`]).
    pub fn new(order: Vec<usize>) -> Failover {
        Failover {
            order,
            current: None,
            quarantine: BTreeSet::new(),
        }
    }

    /// The servers to try for the next request, at most [`MAX_ATTEMPTS`]: the current one
    /// first, then the others in order, without quarantined ones. When at least 66 % of the
    /// servers are quarantined, the quarantine is cleared first.
    pub fn candidates(&mut self) -> Vec<usize> {
        let threshold = self.order.len() * QUARANTINE_REFRESH_PERCENT / 100;
        if !self.quarantine.is_empty() && self.quarantine.len() >= threshold {
            self.quarantine.clear();
        }
        let mut out: Vec<usize> = self.current.into_iter().collect();
        out.extend(
            self.order
                .iter()
                .copied()
                .filter(|i| Some(*i) != self.current && !self.quarantine.contains(i)),
        );
        out.truncate(MAX_ATTEMPTS);
        out
    }

    /// Records a success of server `i`; true when it was not the current server before.
    pub fn succeeded(&mut self, i: usize) -> bool {
        self.quarantine.remove(&i);
        self.current.replace(i) != Some(i)
    }

    /// Records a failure of server `i`: it is no longer current and is quarantined.
    pub fn failed(&mut self, i: usize) {
        if self.current == Some(i) {
            self.current = None;
        }
        self.quarantine.insert(i);
    }

    /// The server in use, if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }
}

/// One configured Eureka server.
#[derive(Clone)]
struct Server {
    /// Service URL without credentials, ending with `/`.
    url: String,
    /// Service URL for logs (credentials removed).
    shown: String,
    /// Basic-auth credentials from the URL.
    auth: Option<(String, String)>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// One HTTP request to a Eureka server, relative to its service URL.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Path and query relative to the service URL, already percent-encoded (`apps/delta`).
    pub(crate) path: String,
    /// `Accept` header.
    pub(crate) accept: &'static str,
    /// JSON body (sent with `Content-Type: application/json`).
    pub(crate) json: Option<Vec<u8>>,
}

/// A server's answer: status and (size-limited) body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// What one server gave for one request.
#[derive(Debug)]
pub(crate) struct Served<T> {
    pub(crate) value: T,
    /// The server (credentials removed).
    pub(crate) server: String,
    /// Whether this server just became the one in use.
    pub(crate) switched: bool,
}

/// HTTP access to a list of Eureka servers with Eureka's failover rules. The fetch client and
/// the registration client each have their own, as in Netflix's `DiscoveryClient`.
pub(crate) struct Transport {
    http: reqwest::Client,
    servers: Vec<Server>,
    failover: Mutex<Failover>,
    max_payload: usize,
}

/// The TLS client configuration for Eureka: `base` (system roots plus `upstream.ca_file`), or
/// the system roots plus `registry.ca_file` when set; with the client certificate of
/// `registry.client_cert`/`client_key` when set.
fn eureka_tls(
    opts: &EurekaOptions,
    base: rustls::ClientConfig,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut tls = match &opts.ca_file {
        Some(ca) => crate::tls::client_config(Some(ca)).context("registry.ca_file")?,
        None => base,
    };
    if let (Some(cert), Some(key)) = (&opts.client_cert, &opts.client_key) {
        tls = crate::tls::with_client_cert(tls, cert, key)
            .context("registry.client_cert / registry.client_key")?;
    }
    Ok(tls)
}

impl Transport {
    /// A transport for `servers` (service URLs ending with `/`, credentials allowed) with the
    /// timeouts, payload limit, zone preference and TLS settings of `cfg`.
    ///
    /// # Errors
    /// When the CA bundle or client certificate cannot be loaded (the message names the key
    /// and file), or the HTTP client cannot be built.
    pub(crate) fn new(
        servers: &[String],
        cfg: &RegistryConfig,
        base_tls: rustls::ClientConfig,
    ) -> anyhow::Result<Transport> {
        let tls = eureka_tls(&cfg.eureka, base_tls)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.connect_timeout + cfg.read_timeout)
            .user_agent(concat!("wsrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let servers: Vec<Server> = servers
            .iter()
            .map(|s| {
                let (url, auth) = credentials(s);
                Server {
                    url,
                    shown: redact(s),
                    auth,
                }
            })
            .collect();
        let zones: Vec<String> = (0..servers.len())
            .map(|i| {
                cfg.eureka
                    .server_zones
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| crate::config::DEFAULT_ZONE.to_owned())
            })
            .collect();
        let order = server_order(
            &zones,
            cfg.eureka.zone.as_deref(),
            &mut fastrand::Rng::new(),
        );
        Ok(Transport {
            http,
            servers,
            failover: Mutex::new(Failover::new(order)),
            max_payload: cfg.max_payload_size,
        })
    }

    fn failover(&self) -> std::sync::MutexGuard<'_, Failover> {
        self.failover.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server in use (credentials removed), if one answered.
    pub(crate) fn current(&self) -> Option<String> {
        let cur = self.failover().current();
        cur.and_then(|i| self.servers.get(i))
            .map(|s| s.shown.clone())
    }

    /// Sends `call` to one server and reads the answer (at most `max_payload` bytes).
    async fn send(&self, server: &Server, call: &Call) -> Result<Answer, FetchError> {
        let mut req = self
            .http
            .request(call.method.clone(), format!("{}{}", server.url, call.path))
            .header(header::ACCEPT, call.accept)
            .header(header::ACCEPT_ENCODING, "gzip");
        if let Some((u, p)) = &server.auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(body) = &call.json {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let transport = |e: reqwest::Error| FetchError::Transport {
            server: server.shown.clone(),
            timed_out: e.is_timeout(),
            message: if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                format!(
                    "connection failed: {}",
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string())
                )
            } else {
                e.without_url().to_string()
            },
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body_error = |e: BodyError| match e {
            BodyError::TooLarge => FetchError::TooLarge {
                server: server.shown.clone(),
                max: self.max_payload,
            },
            BodyError::Gzip(message) => FetchError::Transport {
                server: server.shown.clone(),
                message,
                timed_out: false,
            },
        };
        let gzip = match resp.headers().get(header::CONTENT_ENCODING) {
            None => false,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"identity") => false,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"gzip") => true,
            Some(v) => {
                return Err(FetchError::Transport {
                    server: server.shown.clone(),
                    message: format!(
                        "unsupported Content-Encoding {:?} (gzip was asked for)",
                        String::from_utf8_lossy(v.as_bytes())
                    ),
                    timed_out: false,
                })
            }
        };
        let mut body =
            Collector::new(self.max_payload, gzip, resp.content_length()).map_err(body_error)?;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            body.push(&chunk).map_err(body_error)?;
        }
        let body = body.finish().map_err(body_error)?;
        Ok(Answer { status, body })
    }

    /// Sends `call` with failover: `accept` turns a server's answer into the result, or into
    /// an error that sends the request on to the next server.
    ///
    /// # Errors
    /// [`AllFailed`] with every attempt's cause when no server gave an accepted answer.
    pub(crate) async fn execute<T>(
        &self,
        call: &Call,
        accept: impl Fn(&str, Answer) -> Result<T, FetchError>,
    ) -> Result<Served<T>, AllFailed> {
        let candidates = self.failover().candidates();
        let mut failed = AllFailed {
            errors: Vec::new(),
            timed_out: false,
        };
        for idx in candidates {
            let Some(server) = self.servers.get(idx) else {
                continue;
            };
            let result = match self.send(server, call).await {
                Ok(answer) => accept(&server.shown, answer),
                Err(e) => Err(e),
            };
            match result {
                Ok(value) => {
                    let switched = self.failover().succeeded(idx);
                    if switched {
                        tracing::info!(server = %server.shown, "using Eureka server");
                    }
                    return Ok(Served {
                        value,
                        server: server.shown.clone(),
                        switched,
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, method = %call.method, "Eureka request failed; trying the next server");
                    self.failover().failed(idx);
                    failed.timed_out |= e.timed_out();
                    failed.errors.push(e.to_string());
                }
            }
        }
        Err(failed)
    }
}

/// How the registry is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FetchKind {
    /// Full first, then deltas.
    Delta,
    /// Always `GET apps/` (`registry.full_fetch_only`).
    FullOnly,
    /// Always `GET vips/{vip}` (`registry.vip`).
    Vip(String),
}

/// What one refresh did, for the refresh loop and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A full fetch (first fetch, full-fetch-only, VIP, or a delta the server refused).
    Full,
    /// A delta applied whose hash matched.
    Delta,
    /// A delta whose hash did not match, followed by a successful full fetch.
    Reconcile,
    /// Every server failed; the last good table stays.
    Failed {
        /// Whether a request timed out (the delay doubles).
        timed_out: bool,
    },
}

impl Outcome {
    /// The `outcome` label of `wsrelay_registry_fetches_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Full => "full",
            Outcome::Delta => "delta",
            Outcome::Reconcile => "reconcile",
            Outcome::Failed { .. } => "error",
        }
    }

    /// Whether this refresh failed with a timeout.
    pub fn timed_out(self) -> bool {
        matches!(self, Outcome::Failed { timed_out: true })
    }

    /// Whether this refresh failed.
    pub fn failed(self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

/// The delay before the next refresh (Eureka's `TimedSupervisorTask`): doubled after a
/// timeout, up to `interval × bound`; back to `interval` after anything else.
pub fn next_delay(current: Duration, interval: Duration, bound: u32, timed_out: bool) -> Duration {
    if timed_out {
        current
            .saturating_mul(2)
            .min(interval.saturating_mul(bound.max(1)))
    } else {
        interval
    }
}

/// Eureka's reconcile hash (`Applications.getReconcileHashCode`): the number of instances per
/// status, statuses in name order, written `STATUS_count_`, e.g. `DOWN_1_OUT_OF_SERVICE_1_UP_2_`;
/// an empty registry gives the empty string. The status counted is `status` alone, never
/// `overriddenStatus`: Eureka's `Applications.populateInstanceCountMap` counts
/// `InstanceInfo.getStatus()`, and a real server keeps `status` DOWN or STARTING while an
/// override says UP (`DownOrStartingRule` comes first in `PeerAwareInstanceRegistryImpl`'s
/// rule chain), so counting the override made every refresh a reconcile.
pub fn reconcile_hash(snapshot: &Snapshot) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for inst in snapshot.applications.iter().flat_map(|a| &a.instances) {
        *counts.entry(inst.status.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{status}_{n}_"))
        .collect()
}

/// Applies a delta to `registry` in payload order (Eureka's `DiscoveryClient.updateDelta`):
/// `ADDED` and `MODIFIED` insert or replace the instance with the same `instanceId` in its
/// application (matched case-insensitively; created if missing), `DELETED` removes it, and
/// entries without an `actionType` are ignored. Applications left without instances are
/// removed. Applying the same delta twice gives the same registry.
pub fn apply_delta(registry: &mut Snapshot, delta: &Snapshot) {
    for app in &delta.applications {
        for inst in &app.instances {
            let name = if app.name.is_empty() {
                inst.app.as_str()
            } else {
                app.name.as_str()
            };
            match inst.action_type {
                Some(ActionType::Added | ActionType::Modified) => {
                    let pos = registry
                        .applications
                        .iter()
                        .position(|a| a.name.eq_ignore_ascii_case(name));
                    let target = match pos.and_then(|p| registry.applications.get_mut(p)) {
                        Some(a) => a,
                        None => {
                            registry.applications.push(Application {
                                name: name.to_owned(),
                                instances: Vec::new(),
                            });
                            match registry.applications.last_mut() {
                                Some(a) => a,
                                None => continue,
                            }
                        }
                    };
                    match target
                        .instances
                        .iter_mut()
                        .find(|i| i.instance_id == inst.instance_id)
                    {
                        Some(existing) => *existing = inst.clone(),
                        None => target.instances.push(inst.clone()),
                    }
                }
                Some(ActionType::Deleted) => {
                    if let Some(a) = registry
                        .applications
                        .iter_mut()
                        .find(|a| a.name.eq_ignore_ascii_case(name))
                    {
                        a.instances.retain(|i| i.instance_id != inst.instance_id);
                    }
                }
                None => {}
            }
        }
    }
    registry.applications.retain(|a| !a.instances.is_empty());
}

/// A delta answer.
enum DeltaAnswer {
    /// The delta payload.
    Delta(Snapshot),
    /// 403 or 404: the server does not serve deltas (or not safely now).
    Unavailable(u16),
}

struct Local {
    /// The local, unfiltered registry deltas are applied to; `None` until a full fetch
    /// succeeds (the cache never seeds it: deltas only cover the last minutes).
    registry: Option<Snapshot>,
    /// Whether a refused delta was already logged at info.
    delta_refusal_logged: bool,
}

/// A Eureka client: fetches the registry from a list of servers and publishes it.
pub struct EurekaClient {
    transport: Transport,
    accept: &'static str,
    kind: FetchKind,
    cache: Option<super::cache::Cache>,
    max_payload: usize,
    local: tokio::sync::Mutex<Local>,
}

fn decode_answer(server: &str, answer: Answer) -> Result<Snapshot, FetchError> {
    if !(200..300).contains(&answer.status) {
        return Err(FetchError::Status {
            server: server.to_owned(),
            status: answer.status,
        });
    }
    decode(&answer.body).map_err(|source| FetchError::Decode {
        server: server.to_owned(),
        source,
    })
}

impl EurekaClient {
    /// A client for `servers` (each ending with `/`) with the settings of `cfg`; `tls` is the
    /// base trust (system roots plus `upstream.ca_file`), replaced or extended by
    /// `registry.ca_file` and `registry.client_cert`.
    ///
    /// # Errors
    /// When the CA bundle or client certificate cannot be loaded, or the HTTP client cannot be
    /// built.
    pub fn new(
        servers: Vec<String>,
        cfg: &RegistryConfig,
        tls: rustls::ClientConfig,
    ) -> anyhow::Result<EurekaClient> {
        let kind = match (&cfg.eureka.vip, cfg.eureka.full_fetch_only) {
            (Some(vip), _) => FetchKind::Vip(vip.clone()),
            (None, true) => FetchKind::FullOnly,
            (None, false) => FetchKind::Delta,
        };
        Ok(EurekaClient {
            transport: Transport::new(&servers, cfg, tls)?,
            accept: match cfg.format {
                WireFormat::Json => "application/json",
                WireFormat::Xml => "application/xml",
            },
            kind,
            cache: cfg.eureka.cache.clone().map(super::cache::Cache::new),
            max_payload: cfg.max_payload_size,
            local: tokio::sync::Mutex::new(Local {
                registry: None,
                delta_refusal_logged: false,
            }),
        })
    }

    fn get(&self, path: String) -> Call {
        Call {
            method: Method::GET,
            path,
            accept: self.accept,
            json: None,
        }
    }

    async fn fetch_full(&self) -> Result<Served<Snapshot>, AllFailed> {
        let path = match &self.kind {
            FetchKind::Vip(vip) => format!("vips/{}", path_segment(vip)),
            FetchKind::Delta | FetchKind::FullOnly => "apps/".to_owned(),
        };
        self.transport.execute(&self.get(path), decode_answer).await
    }

    async fn fetch_delta(&self) -> Result<Served<DeltaAnswer>, AllFailed> {
        self.transport
            .execute(&self.get("apps/delta".to_owned()), |server, answer| {
                if answer.status == 403 || answer.status == 404 {
                    return Ok(DeltaAnswer::Unavailable(answer.status));
                }
                decode_answer(server, answer).map(DeltaAnswer::Delta)
            })
            .await
    }

    /// Fetches the registry once in full (`GET apps/`, or `GET vips/{vip}`) with failover,
    /// without touching the client's local registry (for `wsrelay check`).
    ///
    /// # Errors
    /// Every server's error, joined, when all fail.
    pub async fn fetch(&self) -> Result<(Snapshot, String), String> {
        self.fetch_full()
            .await
            .map(|s| (s.value, s.server))
            .map_err(|e| e.to_string())
    }

    /// A copy of the local registry deltas are applied to (`None` before the first full fetch).
    pub async fn local_registry(&self) -> Option<Snapshot> {
        self.local.lock().await.registry.clone()
    }

    /// The server in use (credentials removed), if one answered.
    pub fn current_server(&self) -> Option<String> {
        self.transport.current()
    }

    fn note(&self, publisher: &Publisher, outcome: Outcome, server: &str, switched: bool) {
        publisher
            .metrics
            .fetches
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        if switched {
            publisher.metrics.server.clear();
            publisher
                .metrics
                .server
                .get_or_create(&ServerLabel {
                    server: server.to_owned(),
                })
                .set(1);
        }
    }

    async fn succeed(&self, publisher: &Publisher, snapshot: &Snapshot, server: &str) {
        publisher.publish(snapshot, server);
        if let Some(cache) = &self.cache {
            cache.save(snapshot).await;
        }
    }

    async fn full(&self, local: &mut Local, publisher: &Publisher, outcome: Outcome) -> Outcome {
        match self.fetch_full().await {
            Ok(served) => {
                self.note(publisher, outcome, &served.server, served.switched);
                self.succeed(publisher, &served.value, &served.server).await;
                local.registry = Some(served.value);
                outcome
            }
            Err(e) => {
                let timed_out = e.timed_out;
                publisher.fail(e.to_string());
                Outcome::Failed { timed_out }
            }
        }
    }

    /// One refresh: a delta when a local registry exists and deltas are allowed, a full fetch
    /// otherwise or when the delta is refused or its hash does not match. Publishes the result
    /// and writes the cache; on failure records it (the last good table stays).
    pub async fn refresh(&self, publisher: &Publisher) -> Outcome {
        let mut guard = self.local.lock().await;
        let local = &mut *guard;
        if self.kind != FetchKind::Delta || local.registry.is_none() {
            return self.full(local, publisher, Outcome::Full).await;
        }
        let served = match self.fetch_delta().await {
            Ok(served) => served,
            Err(e) => {
                let timed_out = e.timed_out;
                publisher.fail(e.to_string());
                return Outcome::Failed { timed_out };
            }
        };
        match served.value {
            DeltaAnswer::Unavailable(status) => {
                if local.delta_refusal_logged {
                    tracing::debug!(status, server = %served.server, "Eureka refused the delta; fetching the full registry");
                } else {
                    local.delta_refusal_logged = true;
                    tracing::info!(status, server = %served.server, "Eureka refused the delta (delta disabled on the server?); fetching the full registry instead (logged once)");
                }
                self.full(local, publisher, Outcome::Full).await
            }
            DeltaAnswer::Delta(delta) => {
                let Some(registry) = local.registry.as_mut() else {
                    return self.full(local, publisher, Outcome::Full).await;
                };
                apply_delta(registry, &delta);
                let mine = reconcile_hash(registry);
                let theirs = delta.apps_hashcode.as_deref().unwrap_or("");
                if mine == theirs {
                    self.note(publisher, Outcome::Delta, &served.server, served.switched);
                    let snapshot = &*registry;
                    self.succeed(publisher, snapshot, &served.server).await;
                    return Outcome::Delta;
                }
                tracing::info!(
                    local = %mine,
                    server_hash = %theirs,
                    server = %served.server,
                    "registry hash differs after applying the delta; fetching the full registry (reconcile)"
                );
                // Deltas are never applied to a registry known to be wrong.
                local.registry = None;
                self.full(local, publisher, Outcome::Reconcile).await
            }
        }
    }

    /// Loads the last-known-good cache (`registry.cache`) and publishes it, marking the
    /// registry status as served from the cache. Returns true when a cache was loaded. A
    /// missing or unreadable cache is logged and leaves the routes as they are.
    pub async fn load_cache(&self, publisher: &Publisher) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        match super::cache::load(cache.path(), self.max_payload).await {
            Ok((snapshot, saved_at)) => {
                publisher.publish_cached(
                    &snapshot,
                    &format!("cache {}", cache.path().display()),
                    saved_at,
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "no Eureka server answered and the registry cache cannot be used; no routes until a server answers");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Instance, Status};

    #[test]
    fn credentials_are_split_and_redacted() {
        assert_eq!(
            redact("https://u:p@host:8761/eureka/"),
            "https://host:8761/eureka/"
        );
        assert_eq!(redact("http://host/eureka/"), "http://host/eureka/");
        let (clean, c) = credentials("https://user:se:cret@h/eureka/");
        assert_eq!(clean, "https://h/eureka/");
        assert_eq!(c, Some(("user".into(), "se:cret".into())));
        assert_eq!(credentials("http://h/e/").1, None);
    }

    fn inst(app: &str, id: &str, status: Status, action: Option<ActionType>) -> Instance {
        Instance {
            instance_id: id.into(),
            app: app.into(),
            host_name: "h".into(),
            status,
            action_type: action,
            ..Instance::default()
        }
    }

    fn snap(apps: &[(&str, Vec<Instance>)]) -> Snapshot {
        Snapshot {
            applications: apps
                .iter()
                .map(|(n, i)| Application {
                    name: (*n).into(),
                    instances: i.clone(),
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn ids(s: &Snapshot) -> Vec<String> {
        let mut v: Vec<String> = s
            .applications
            .iter()
            .flat_map(|a| {
                a.instances
                    .iter()
                    .map(move |i| format!("{}/{}/{}", a.name, i.instance_id, i.status))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn hash_counts_statuses_in_name_order() {
        assert_eq!(reconcile_hash(&Snapshot::default()), "");
        let s = snap(&[
            (
                "A",
                vec![
                    inst("A", "1", Status::Up, None),
                    inst("A", "2", Status::Down, None),
                    inst("A", "3", Status::Up, None),
                ],
            ),
            (
                "B",
                vec![
                    // As a real server holds it: own status DOWN, an override UP.
                    Instance {
                        overridden_status: Status::Up,
                        ..inst("B", "4", Status::Down, None)
                    },
                    inst("B", "5", Status::OutOfService, None),
                ],
            ),
        ]);
        assert_eq!(reconcile_hash(&s), "DOWN_2_OUT_OF_SERVICE_1_UP_2_");
    }

    #[test]
    fn delta_upserts_deletes_in_order_and_is_idempotent() {
        use ActionType::*;
        let mut reg = snap(&[
            (
                "A",
                vec![
                    inst("A", "a1", Status::Up, None),
                    inst("A", "a2", Status::Up, None),
                ],
            ),
            ("B", vec![inst("B", "b1", Status::Up, None)]),
        ]);
        let delta = snap(&[
            (
                "a",
                vec![
                    inst("A", "a1", Status::Down, Some(Modified)),
                    inst("A", "a3", Status::Up, Some(Added)),
                    // Deleted, then added again: the later entry wins.
                    inst("A", "a2", Status::Up, Some(Deleted)),
                    inst("A", "a2", Status::Starting, Some(Added)),
                ],
            ),
            ("B", vec![inst("B", "b1", Status::Up, Some(Deleted))]),
            (
                "C",
                vec![
                    inst("C", "c1", Status::Up, Some(Added)),
                    inst("C", "c2", Status::Up, Some(Added)),
                    inst("C", "c2", Status::Up, Some(Deleted)),
                    inst("C", "c9", Status::Up, None),
                ],
            ),
        ]);
        apply_delta(&mut reg, &delta);
        let once = ids(&reg);
        assert_eq!(
            once,
            ["A/a1/DOWN", "A/a2/STARTING", "A/a3/UP", "C/c1/UP"],
            "B disappears with its last instance; c2 added then deleted; c9 has no action"
        );
        apply_delta(&mut reg, &delta);
        assert_eq!(ids(&reg), once);
        assert_eq!(reconcile_hash(&reg), "DOWN_1_STARTING_1_UP_2_");
    }

    #[test]
    fn zone_order_puts_own_zone_first() {
        let zones: Vec<String> = ["a", "b", "a", "c", "b"]
            .iter()
            .map(|s| (*s).into())
            .collect();
        for seed in 0..20 {
            let order = server_order(&zones, Some("b"), &mut fastrand::Rng::with_seed(seed));
            let mut first: Vec<usize> = order[..2].to_vec();
            first.sort();
            assert_eq!(first, [1, 4]);
            let mut all = order.clone();
            all.sort();
            assert_eq!(all, [0, 1, 2, 3, 4]);
        }
        let orders: BTreeSet<Vec<usize>> = (0..50)
            .map(|s| server_order(&zones, None, &mut fastrand::Rng::with_seed(s)))
            .collect();
        assert!(orders.len() > 1, "without a zone the servers are shuffled");
    }

    #[test]
    fn failover_sticks_to_a_working_server_and_quarantines_failures() {
        let mut f = Failover::new(vec![0, 1, 2, 3, 4]);
        assert_eq!(f.candidates(), [0, 1, 2]);
        f.failed(0);
        assert!(f.succeeded(1));
        // Sticks to 1; 0 is quarantined.
        assert_eq!(f.candidates(), [1, 2, 3]);
        assert!(!f.succeeded(1));
        f.failed(1);
        f.failed(2);
        // 3 of 5 quarantined (threshold 3): cleared, everything is tried again in order.
        assert_eq!(f.candidates(), [0, 1, 2]);
        // Two servers: a single failure reaches the threshold (1), as in Eureka.
        let mut two = Failover::new(vec![1, 0]);
        two.failed(1);
        assert_eq!(two.candidates(), [1, 0]);
        assert!(two.succeeded(0));
        assert_eq!(two.candidates(), [0, 1]);
    }

    #[test]
    fn delay_doubles_on_timeouts_up_to_the_bound_and_resets() {
        let i = Duration::from_secs(30);
        let mut d = i;
        for expected in [60, 120, 240, 300, 300] {
            d = next_delay(d, i, 10, true);
            assert_eq!(d, Duration::from_secs(expected));
        }
        assert_eq!(next_delay(d, i, 10, false), i);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("host:app:10010"), "host:app:10010");
        assert_eq!(path_segment("a b/c?d%"), "a%20b%2Fc%3Fd%25");
    }
}
