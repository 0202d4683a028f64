//! The Eureka registry: model, decoders (XML and JSON) and sources.

pub mod json;
pub mod model;
pub mod xml;

pub use model::{ActionType, Application, Instance, PortInfo, Snapshot, Status};

/// Why a registry payload could not be decoded. Carries the position where the decoder
/// stopped (line/column for JSON, byte offset for XML) and the cause.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not valid JSON, or its shape is not a Eureka payload.
    #[error("invalid Eureka JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What went wrong.
        message: String,
    },
    /// The payload is not well-formed XML, or its shape is not a Eureka payload.
    #[error("invalid Eureka XML at byte {offset}: {message}")]
    Xml {
        /// Byte offset into the payload.
        offset: u64,
        /// What went wrong.
        message: String,
    },
    /// The payload is neither JSON nor XML (first non-blank byte is not `{` or `<`), or empty.
    #[error("registry payload is neither JSON nor XML: {0}")]
    UnknownFormat(String),
}

/// Decodes a registry payload whose format is detected from its first non-whitespace byte
/// (`{` → JSON, `<` → XML; a UTF-8 BOM is skipped).
///
/// # Errors
/// [`DecodeError`] with a position and cause; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => json::decode(body),
        Some(b'<') => xml::decode(body),
        Some(other) => Err(DecodeError::UnknownFormat(format!(
            "first byte is {:?}",
            char::from(*other)
        ))),
        None => Err(DecodeError::UnknownFormat("empty payload".into())),
    }
}

mod body;
pub mod cache;
pub mod eureka;
pub mod file;
pub mod register;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What the registry source last did, for health and diagnostics.
#[derive(Debug, Default)]
pub struct RegistryStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default, Clone)]
struct StatusInner {
    last_success: Option<SystemTime>,
    source: String,
    last_error: Option<String>,
    from_cache: bool,
    /// A last-known-good cache will be tried if the first fetch fails (`registry.cache`).
    cache_fallback: bool,
}

/// A copy of the registry status.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    /// When a registry payload was last fetched and decoded (None: never).
    pub last_success: Option<SystemTime>,
    /// Where the last good payload came from (URL or file).
    pub source: String,
    /// The error of the last failed attempt, if the last attempt failed.
    pub last_error: Option<String>,
    /// Whether the routes come from the last-known-good cache (`registry.cache`) because no
    /// Eureka server answered since the start; false once a server answers.
    pub from_cache: bool,
}

impl RegistryStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful fetch from `source`.
    pub fn success(&self, source: &str) {
        let mut g = self.lock();
        g.last_success = Some(SystemTime::now());
        if g.source != source {
            g.source = source.to_owned();
        }
        g.last_error = None;
        g.from_cache = false;
    }

    /// Records that the registry was loaded from the cache `source`, written at `saved_at`
    /// (kept as the last success, so the registry age stays honest). The last error stays.
    pub fn cached(&self, source: &str, saved_at: SystemTime) {
        let mut g = self.lock();
        g.last_success = Some(saved_at);
        source.clone_into(&mut g.source);
        g.from_cache = true;
    }

    /// Records a failed attempt; returns true if this starts an outage (the previous attempt
    /// succeeded or there was none), so the caller logs once per outage.
    pub fn failure(&self, error: String) -> bool {
        let mut g = self.lock();
        let new = g.last_error.is_none();
        g.last_error = Some(error);
        new
    }

    /// Says that a last-known-good cache stands in if the first fetch fails, so that failure
    /// is not reported as "no routes" before the cache is tried.
    pub fn expect_cache_fallback(&self) {
        self.lock().cache_fallback = true;
    }

    /// Whether a registry was ever loaded.
    pub fn loaded(&self) -> bool {
        self.lock().last_success.is_some()
    }

    /// A copy for display.
    pub fn snapshot(&self) -> StatusSnapshot {
        let g = self.lock().clone();
        StatusSnapshot {
            last_success: g.last_success,
            source: g.source,
            last_error: g.last_error,
            from_cache: g.from_cache,
        }
    }
}

/// Where a registry source hands each registry it loaded. `lib.rs` wires it to the routing
/// table ([`crate::routing::TableSink`]); sources do not know what is built from a snapshot.
pub trait SnapshotSink: Send + Sync {
    /// Takes the registry `snapshot`, read from `source` (a server URL or a file path);
    /// returns true when what is served from it changed.
    fn take(&self, snapshot: &Snapshot, source: &str) -> bool;
}

/// What every registry source reports to: its health and metrics, and the sink that gets each
/// snapshot it loaded.
#[derive(Clone)]
pub struct Publisher {
    /// Gets every snapshot a source loaded.
    pub sink: Arc<dyn SnapshotSink>,
    /// Health of the source.
    pub status: Arc<RegistryStatus>,
    /// Registry metrics (last success, fetch outcomes, instances by status).
    pub metrics: crate::metrics::RegistryMetrics,
}

impl Publisher {
    /// Records a successful load of `snapshot` from `source` and hands it to the sink.
    /// Returns true when what is served changed.
    pub fn publish(&self, snapshot: &Snapshot, source: &str) -> bool {
        let recovered = self.status.snapshot().last_error.is_some();
        self.status.success(source);
        self.record_success(snapshot, SystemTime::now());
        if recovered {
            tracing::info!(source, "registry reachable again");
        }
        self.sink.take(snapshot, source)
    }

    /// Publishes a registry loaded from the last-known-good cache `source`, written at
    /// `saved_at`: the registry status says `from_cache` and its last success is `saved_at`.
    /// Logged as a warning (the agent routes while discovery is down). Returns true when what
    /// is served changed.
    pub fn publish_cached(&self, snapshot: &Snapshot, source: &str, saved_at: SystemTime) -> bool {
        self.status.cached(source, saved_at);
        self.record_success(snapshot, saved_at);
        let age = SystemTime::now()
            .duration_since(saved_at)
            .map(|d| {
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
            })
            .unwrap_or_else(|_| "0s".to_owned());
        tracing::warn!(
            source,
            age = %age,
            instances = snapshot.instance_count(),
            "no Eureka server answered; serving the last-known-good registry from the cache"
        );
        self.sink.take(snapshot, source)
    }

    fn record_success(&self, snapshot: &Snapshot, at: SystemTime) {
        let now = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.metrics.last_success.set(now);
        let mut counts: std::collections::BTreeMap<Status, i64> = std::collections::BTreeMap::new();
        for inst in snapshot.applications.iter().flat_map(|a| &a.instances) {
            *counts.entry(inst.status).or_default() += 1;
        }
        self.metrics.instances.clear();
        for (status, n) in counts {
            self.metrics
                .instances
                .get_or_create(&crate::metrics::StatusLabel {
                    status: status.as_str().to_owned(),
                })
                .set(n);
        }
    }

    /// Records a failed fetch/decode; logs it once per outage (the last good table stays).
    pub fn fail(&self, error: String) {
        self.metrics
            .fetches
            .get_or_create(&crate::metrics::OutcomeLabel { outcome: "error" })
            .inc();
        if self.status.failure(error.clone()) {
            if self.status.loaded() {
                tracing::warn!(error = %error, "registry update failed; keeping the last good routing table (logged once until it recovers)");
            } else if self.status.lock().cache_fallback {
                // The cache load that follows says whether routes come from it.
                tracing::warn!(error = %error, "no Eureka server answered at start; trying the last-known-good registry cache (logged once until a server answers)");
            } else {
                tracing::warn!(error = %error, "registry not loaded yet; no routes (logged once until it recovers)");
            }
        }
    }
}

/// Loads the registry once from the configured source (a failure is recorded and logged, not
/// fatal), then spawns the refresh loop on `tracker`; the loop ends when `shutdown` is
/// cancelled.
///
/// # Errors
/// Only when the source cannot be set up at all (e.g. the Eureka HTTP client cannot be built).
pub async fn spawn(
    config: &crate::config::RegistryConfig,
    publisher: Publisher,
    client_tls: rustls::ClientConfig,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let interval = config.refresh_interval;
    match &config.source {
        crate::config::RegistrySource::File(path) => {
            let path = path.clone();
            let max = config.max_payload_size;
            file::refresh(&path, max, &publisher).await;
            // Reload on every change of the file (watched through its directory, so renames
            // and symlink swaps count) and every refresh interval as a safety net. Publishing
            // compares before it swaps, so an unchanged file costs one read and no log line.
            let watched = vec![path.clone()];
            crate::watch::spawn(
                "registry file",
                watched,
                interval,
                tracker,
                shutdown,
                move || {
                    let (path, publisher) = (path.clone(), publisher.clone());
                    async move {
                        file::refresh(&path, max, &publisher).await;
                    }
                },
            );
        }
        crate::config::RegistrySource::Eureka(urls) => {
            // Eureka: first fetch now (the cache stands in if no server answers), then
            // full/delta refreshes with Eureka's backoff after timeouts.
            let client = eureka::EurekaClient::new(urls.clone(), config, client_tls)?;
            if config.eureka.cache.is_some() {
                publisher.status.expect_cache_fallback();
            }
            let first = client.refresh(&publisher).await;
            if first.failed() {
                client.load_cache(&publisher).await;
            }
            let bound = config.eureka.backoff_bound;
            let mut delay = eureka::next_delay(interval, interval, bound, first.timed_out());
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    let outcome = tokio::select! {
                        () = shutdown.cancelled() => break,
                        o = client.refresh(&publisher) => o,
                    };
                    delay = eureka::next_delay(delay, interval, bound, outcome.timed_out());
                }
            });
        }
    }
    Ok(())
}
