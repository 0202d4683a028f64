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

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;

use super::{decode, ActionType, Application, Publisher, Snapshot};
use crate::config::{RegistryConfig, WireFormat};
use crate::metrics::{OutcomeLabel, ServerLabel};

mod transport;

pub use transport::*;

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
mod tests;
