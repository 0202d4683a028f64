//! wsrelay: a WebSocket gateway sidecar for Eureka-based platforms (Zowe API Mediation Layer).
//!
//! It reads a Eureka registry (HTTP or a file), builds WebSocket routes from instance metadata
//! (`apiml.routes.<name>.gatewayUrl` / `serviceUrl`), terminates TLS, and relays each client
//! session to a live service instance. This crate is the library the `wsrelay` binary wires
//! up; tests drive the real agent in-process through [`start`].
//!
//! Module map (data flows top to bottom): [`config`] → [`registry`] (model, decoders, sources;
//! each snapshot goes to a sink wired here) → [`routing`] → [`server`] (listener, TLS stream,
//! request router) → [`session`] (open, failover policy, table) → [`relay`] (pumps, close
//! sequencing, failover delivery) → [`ws`] (RFC 6455 framing). [`state`] is the agent state
//! they share, [`close`] the one table of endings, [`admin`] the `/application` endpoints,
//! [`tls`] certificates.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod close;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod routing;
pub mod server;
pub mod session;
pub mod state;
pub mod systemd;
pub mod tls;
pub mod watch;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::{Config, RegistrySource};
use registry::{eureka::EurekaClient, Publisher, RegistryStatus};
use relay::RelayConfig;
use routing::RouteTable;
use session::handshake::UpstreamSettings;
use session::table::SessionTable;
use state::Shared;

/// A running agent: its bound address and handles to its state.
pub struct Agent {
    /// The address the listener is bound to (useful with port 0).
    pub local_addr: SocketAddr,
    /// Shared state: routes, sessions, registry status.
    pub shared: Arc<Shared>,
    reload: tokio::sync::Mutex<ReloadState>,
}

/// What a config reload needs besides the shared state.
struct ReloadState {
    config: Config,
    /// The config the upstream TLS watcher rebuilds from.
    current: Arc<ArcSwap<Config>>,
    registry_token: CancellationToken,
    publisher: Publisher,
}

/// Keys whose change a reload cannot apply (the process keeps the old value until restarted).
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen.address");
    }
    if old.limits.max_connections != new.limits.max_connections {
        keys.push("limits.max_connections");
    }
    if old.tls != new.tls {
        keys.push("tls (enabled, cert, key, client_ca, client_auth, reload_interval paths)");
    }
    if format!("{:?}", old.eureka_instance) != format!("{:?}", new.eureka_instance) {
        keys.push("eureka.instance");
    }
    if old.log.format != new.log.format {
        keys.push("log.format");
    }
    if old.routing.websocket_routes != new.routing.websocket_routes {
        keys.push("routing.websocket_routes");
    }
    keys
}

impl Agent {
    /// Number of live sessions.
    pub fn live_sessions(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Starts a shutdown: stop accepting, close sessions with 1001 (both legs).
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Drains after [`Agent::shutdown`]: waits (at most `grace`) until every session has
    /// ended, then closes the listener and waits for the remaining tasks. Until the listener
    /// closes, health answers 503 and upgrades get 503. Returns false if sessions were still
    /// open when `grace` ran out.
    pub async fn drained(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.shared.sessions.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all_closed = self.shared.sessions.is_empty();
        self.shared.closed.cancel();
        self.shared.tracker.close();
        let rest = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_secs(1));
        let _ = tokio::time::timeout(rest, self.shared.tracker.wait()).await;
        all_closed
    }
}

impl Agent {
    /// Applies a new, already validated config (SIGHUP): timeouts, limits, admin access,
    /// shutdown grace, upstream TLS material and the registry source (URLs, interval, ...)
    /// take effect for new sessions and fetches; live sessions keep what they started with.
    /// Returns the keys that changed but need a restart (listen address, listener TLS files,
    /// self-registration, log format). The log level is applied by the caller.
    ///
    /// # Errors
    /// When the new upstream TLS material cannot be loaded or the registry source cannot be
    /// built: then nothing of the new config is applied.
    pub async fn reload(&self, new: Config) -> anyhow::Result<Vec<&'static str>> {
        let mut st = self.reload.lock().await;
        let client_tls =
            tls::client_config(new.upstream.ca_file.as_deref()).context("upstream.ca_file")?;
        let restart = needs_restart(&st.config, &new);
        if st.config.registry != new.registry {
            let token = self.shared.shutdown.child_token();
            registry::spawn(
                &new.registry,
                st.publisher.clone(),
                client_tls.clone(),
                &self.shared.tracker,
                token.clone(),
            )
            .await
            .context("cannot start the new registry source")?;
            st.registry_token.cancel();
            st.registry_token = token;
            tracing::info!("registry source restarted with the new settings");
        }
        let mut next = settings(&new, upstream_tls(&new)?);
        self.shared.closed_sessions.set_cap(new.admin.recent);
        self.shared
            .metrics
            .proxy
            .sessions_limit
            .set(sessions_limit(&new));
        self.shared.refused_upgrades.set_cap(new.admin.recent);
        // The same sticky config keeps its table (and so every client's instance).
        let old = self.shared.settings.load();
        if let (Some(kept), Some(_)) = (&old.routing.sticky, &next.routing.sticky) {
            if Some(kept.config()) == new.routing.sticky.as_ref() {
                next.routing.sticky = Some(Arc::clone(kept));
            }
        }
        self.shared.settings.store(Arc::new(next));
        st.current.store(Arc::new(new.clone()));
        st.config = new;
        Ok(restart)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.shared.closed.cancel();
    }
}

/// The TLS client for `wss` services: system roots plus `upstream.ca_file`, or no
/// verification at all with `upstream.insecure_skip_verify` (logged as a warning).
///
/// # Errors
/// When `upstream.ca_file` cannot be loaded.
fn upstream_tls(config: &Config) -> anyhow::Result<rustls::ClientConfig> {
    if config.upstream.insecure_skip_verify {
        tracing::warn!("upstream.insecure_skip_verify = true: wss service certificates are NOT verified (labs only)");
    }
    let cfg = tls::upstream_client_config(
        config.upstream.ca_file.as_deref(),
        config.upstream.insecure_skip_verify,
    )
    .context("upstream.ca_file")?;
    match &config.upstream.client_cert {
        Some((cert, key)) => tls::with_client_cert(cfg, cert, key)
            .context("upstream.client_cert / upstream.client_key"),
        None => Ok(cfg),
    }
}

/// Watches the upstream TLS material (`upstream.ca_file`, `client_cert`, `client_key`) and
/// swaps in a new TLS client for new `wss` connections when it changes and loads; a bad file
/// keeps the previous client, is logged, and counts in `wsrelay_tls_reload_failures_total`.
/// The paths watched are those of the config at start; a reload (SIGHUP) with new paths loads
/// them at once.
fn spawn_upstream_tls_watch(
    config: &Config,
    current: Arc<ArcSwap<Config>>,
    shared: Arc<Shared>,
    recheck: Duration,
    token: CancellationToken,
) {
    let mut files: Vec<std::path::PathBuf> = config.upstream.ca_file.iter().cloned().collect();
    if let Some((c, k)) = &config.upstream.client_cert {
        files.push(c.clone());
        files.push(k.clone());
    }
    if files.is_empty() {
        return;
    }
    let fingerprint = |files: &[std::path::PathBuf]| {
        watch::fingerprint(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>())
    };
    let last = Arc::new(std::sync::Mutex::new(fingerprint(&files)));
    let tracker = shared.tracker.clone();
    let watched = files.clone();
    watch::spawn(
        "upstream TLS material",
        watched,
        recheck,
        &tracker,
        token,
        move || {
            let (current, shared, last, files) = (
                Arc::clone(&current),
                Arc::clone(&shared),
                Arc::clone(&last),
                files.clone(),
            );
            async move {
                let fp = fingerprint(&files);
                {
                    let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                    if *l == fp {
                        return;
                    }
                    *l = fp;
                }
                let config = current.load_full();
                match upstream_tls(&config) {
                    Ok(tls) => {
                        let mut next = state::Settings::clone(&shared.settings.load());
                        next.upstream.tls = Arc::new(tls);
                        shared.settings.store(Arc::new(next));
                        tracing::info!("upstream TLS material reloaded");
                    }
                    Err(e) => {
                        shared.metrics.tls.reload_failures.inc();
                        tracing::warn!(error = %format!("{e:#}"), "upstream TLS reload refused; the previous material stays in use");
                    }
                }
            }
        },
    );
}

/// `limits.max_sessions` for `wsrelay_sessions_limit` (0 = unlimited).
fn sessions_limit(config: &Config) -> i64 {
    config
        .limits
        .max_sessions
        .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// The reloadable settings for `config`, with `client_tls` for `wss` services.
fn settings(config: &Config, client_tls: rustls::ClientConfig) -> state::Settings {
    let limits = ws::leg::Limits {
        max_message_size: config.limits.max_message_size,
        max_frame_size: config.limits.max_frame_size,
    };
    state::Settings {
        upstream: UpstreamSettings {
            connect_timeout: config.upstream.connect_timeout,
            handshake_timeout: config.upstream.handshake_timeout,
            tls: Arc::new(client_tls),
            limits,
        },
        max_attempts: usize::try_from(config.upstream.max_attempts).unwrap_or(3),
        client_limits: limits,
        relay: RelayConfig {
            close_timeout: config.limits.close_timeout,
            idle_timeout: config.limits.idle_timeout,
            write_timeout: config.limits.write_timeout,
            keepalive: config
                .keepalive
                .map(|(interval, timeout)| relay::Keepalive { interval, timeout }),
            failover_buffer_bytes: config.failover.buffer_bytes,
            failover_deadline: config.failover.deadline,
        },
        handshake_timeout: config.limits.handshake_timeout,
        admin: config.admin.clone(),
        shutdown_grace: config.shutdown_grace,
        max_sessions: config.limits.max_sessions,
        max_sessions_per_ip: config.limits.max_sessions_per_ip,
        insecure_skip_verify: config.upstream.insecure_skip_verify,
        failover: config.failover,
        handshake: config.handshake.clone(),
        deflate: config.deflate.clone(),
        http2: config.tls.as_ref().and_then(|t| t.http2),
        routing: state::RoutingSettings {
            instance_id_header: config.routing.instance_id_header,
            sticky: config
                .routing
                .sticky
                .clone()
                .map(|c| Arc::new(routing::sticky::StickyTable::new(c))),
        },
    }
}

/// Starts the agent: loads TLS material, does a first registry fetch (a failure is logged and
/// retried every refresh interval), binds the listener and spawns the accept loop and the
/// registry refresh loop. Everything stops when `shutdown` is cancelled.
///
/// # Errors
/// When the certificate or key cannot be loaded, the upstream CA bundle is bad, or the
/// listen address cannot be bound. Each error names the file or address.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Agent> {
    let routes = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
    let status = Arc::new(RegistryStatus::default());
    let metrics = Arc::new(metrics::Metrics::new());
    // The one place sources meet the routing table: each snapshot goes to the table sink.
    let publisher = Publisher {
        sink: Arc::new(routing::TableSink {
            routes: Arc::clone(&routes),
            insecure_upstream: config.upstream.insecure_skip_verify,
            scope: config.routing.websocket_routes,
        }),
        status: Arc::clone(&status),
        metrics: metrics.registry.clone(),
    };
    let tracker = TaskTracker::new();

    let (server_tls, cert_store) = match &config.tls {
        Some(files) => {
            let key = tls::load_certified_key(&files.cert, &files.key)
                .context("cannot load the listener certificate")?;
            tls::note_expiry(&key, &metrics.tls, &files.cert);
            let store = Arc::new(tls::CertStore::new(key));
            tls::spawn_reloader(
                files.clone(),
                Arc::clone(&store),
                metrics.tls.clone(),
                files.reload_interval,
                &tracker,
                shutdown.clone(),
            );
            let mut cfg =
                tls::server_config_with_client_auth(Arc::clone(&store), &files.client_auth)
                    .context("cannot build the TLS configuration (tls.client_ca)")?;
            cfg.alpn_protocols = tls::listener_alpn(files.http2.is_some());
            let current = Arc::new(ArcSwap::from_pointee(cfg));
            tls::spawn_client_ca_reloader(
                files.client_auth.clone(),
                Arc::clone(&store),
                Arc::clone(&current),
                metrics.tls.clone(),
                files.reload_interval,
                &tracker,
                shutdown.clone(),
            );
            (Some(current), Some(store))
        }
        None => {
            tracing::warn!("TLS is disabled (tls.enabled = false): clients connect with ws://, for development only");
            (None, None)
        }
    };
    let client_tls = tls::client_config(config.upstream.ca_file.as_deref())
        .context("cannot load upstream.ca_file")?;

    // Registry: first load now, then refresh in the background.
    let registry_token = shutdown.child_token();
    registry::spawn(
        &config.registry,
        publisher.clone(),
        client_tls.clone(),
        &tracker,
        registry_token.clone(),
    )
    .await
    .context("cannot start the registry source")?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    // Optional self-registration with Eureka: registers now, heartbeats, and on shutdown
    // registers the instance DOWN and cancels it (a task on the tracker, so the drain
    // waits for it).
    if let Some(instance) = &config.eureka_instance {
        registry::register::spawn(
            instance,
            &config.registry,
            client_tls.clone(),
            local_addr,
            config.tls.is_some(),
            Arc::clone(&status),
            &tracker,
            shutdown.clone(),
        )
        .context("cannot start the Eureka self-registration")?;
    }
    let shared = Arc::new(Shared {
        routes,
        registry: status,
        metrics,
        sessions: Arc::new(SessionTable::new()),
        settings: ArcSwap::from_pointee(settings(&config, upstream_tls(&config)?)),
        shutdown,
        closed: CancellationToken::new(),
        tracker: tracker.clone(),
        started_at: SystemTime::now(),
        config_path: config.source.as_ref().map(|p| p.display().to_string()),
        cert: cert_store,
        closed_sessions: session::recent::Recent::new(config.admin.recent),
        refused_upgrades: session::recent::Recent::new(config.admin.recent),
    });
    shared
        .metrics
        .proxy
        .sessions_limit
        .set(sessions_limit(&config));
    let current_config = Arc::new(ArcSwap::from_pointee(config.clone()));
    spawn_upstream_tls_watch(
        &config,
        Arc::clone(&current_config),
        Arc::clone(&shared),
        config
            .tls
            .as_ref()
            .map_or(Duration::from_secs(60), |t| t.reload_interval),
        shared.shutdown.clone(),
    );
    tracker.spawn(server::listener::serve(
        listener,
        server_tls,
        Arc::clone(&shared),
        config.limits.max_connections,
    ));
    systemd::spawn(
        &tracker,
        Arc::clone(&shared.registry),
        shared.shutdown.clone(),
    );
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    tracing::info!(address = %local_addr, scheme, "listening");
    Ok(Agent {
        local_addr,
        shared,
        reload: tokio::sync::Mutex::new(ReloadState {
            config,
            current: current_config,
            registry_token,
            publisher,
        }),
    })
}

/// Runs the agent until `shutdown` is cancelled, then drains: health turns DOWN, new
/// upgrades get 503, every session is closed with 1001 on both legs, and the process waits
/// for the close handshakes for at most `shutdown.grace`.
///
/// Each message on `reloads` (SIGHUP) re-reads the config file: an invalid file is rejected
/// as a whole with the reason, and the old config stays; a valid one is applied as
/// [`Agent::reload`] says, and `set_log_level` gets the new `log.level`.
///
/// # Errors
/// As [`start`].
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    mut reloads: tokio::sync::mpsc::Receiver<()>,
    set_log_level: impl Fn(&str) -> Result<(), String>,
) -> anyhow::Result<()> {
    let path = config.source.clone();
    let agent = start(config, shutdown.clone()).await?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = reloads.recv() => {
                if r.is_none() {
                    shutdown.cancelled().await;
                    break;
                }
                reload_from_file(&agent, path.as_deref(), &set_log_level).await;
            }
        }
    }
    systemd::stopping();
    tracing::info!(
        sessions = agent.live_sessions(),
        "shutting down: closing sessions with 1001"
    );
    if !agent
        .drained(agent.shared.settings.load().shutdown_grace)
        .await
    {
        tracing::warn!(
            sessions = agent.live_sessions(),
            "shutdown grace period over; dropping what is left"
        );
    }
    Ok(())
}

/// Re-reads the config file and applies it (see [`run`]). Returns true when applied.
pub async fn reload_from_file(
    agent: &Agent,
    path: Option<&std::path::Path>,
    set_log_level: &dyn Fn(&str) -> Result<(), String>,
) -> bool {
    let Some(path) = path else {
        tracing::warn!("config reload requested, but the config did not come from a file");
        return false;
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected; the current config stays");
            return false;
        }
    };
    let level = new.log.level.clone();
    match agent.reload(new).await {
        Ok(restart) => {
            if let Err(e) = set_log_level(&level) {
                tracing::warn!(error = %e, "log.level not applied");
            }
            tracing::info!(config = %path.display(), "config reloaded");
            if !restart.is_empty() {
                tracing::warn!(keys = %restart.join(", "), "changed settings need a restart to take effect");
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "config reload rejected; the current config stays");
            false
        }
    }
}

/// `wsrelay check`: loads the TLS material, fetches the registry once, and renders the route
/// table as aligned text (service, gateway URL, service URL, instances with scheme, host, port
/// and status).
///
/// # Errors
/// When the certificate/key/CA files are bad or the registry cannot be fetched or decoded.
pub async fn check(config: &Config) -> anyhow::Result<String> {
    check_files(config)?;
    if let Some(files) = &config.tls {
        tls::load_certified_key(&files.cert, &files.key).context("listener certificate")?;
    }
    let client_tls =
        tls::client_config(config.upstream.ca_file.as_deref()).context("upstream.ca_file")?;
    let (snapshot, source) = match &config.registry.source {
        RegistrySource::File(path) => (
            registry::file::load(path, config.registry.max_payload_size).await?,
            path.display().to_string(),
        ),
        RegistrySource::Eureka(urls) => {
            EurekaClient::new(urls.clone(), &config.registry, client_tls)?
                .fetch()
                .await
                .map_err(anyhow::Error::msg)?
        }
    };
    let table = RouteTable::build_scoped(&snapshot, config.routing.websocket_routes);
    Ok(render_routes(&table, &source, &snapshot))
}

/// Loads every file the config names, as the agent would at start, without touching the
/// network: the listener certificate and key, the client CA bundle (`tls.client_ca`), the
/// upstream CA bundle and client certificate, the Eureka client certificate and CA bundle.
///
/// # Errors
/// The first file that cannot be read or used, named with its key.
pub fn check_files(config: &Config) -> anyhow::Result<()> {
    if let Some(files) = &config.tls {
        let key = tls::load_certified_key(&files.cert, &files.key)
            .context("tls.cert / tls.key (the listener certificate)")?;
        let store = Arc::new(tls::CertStore::new(key));
        tls::server_config_with_client_auth(store, &files.client_auth).context("tls.client_ca")?;
    }
    upstream_tls(config)?;
    let e = &config.registry.eureka;
    if let Some(ca) = &e.ca_file {
        tls::load_certs(ca).context("registry.ca_file")?;
    }
    if let (Some(cert), Some(key)) = (&e.client_cert, &e.client_key) {
        tls::load_certified_key(cert, key).context("registry.client_cert / registry.client_key")?;
    }
    Ok(())
}

/// `wsrelay check --offline`: validates the config and loads every file it names
/// ([`check_files`], and the registry file when that is the source), without contacting
/// Eureka (nginx `-t`, HAProxy `-c`, Envoy `--mode validate`). Returns a summary.
///
/// # Errors
/// As [`check_files`], and a registry file that cannot be read or parsed.
pub async fn check_offline(config: &Config) -> anyhow::Result<String> {
    check_files(config)?;
    match &config.registry.source {
        RegistrySource::File(path) => {
            let snapshot = registry::file::load(path, config.registry.max_payload_size).await?;
            let table = RouteTable::build_scoped(&snapshot, config.routing.websocket_routes);
            Ok(format!(
                "config OK; registry file {}: {} applications, {} with WebSocket routes\n",
                path.display(),
                snapshot.applications.len(),
                table.len()
            ))
        }
        RegistrySource::Eureka(urls) => Ok(format!(
            "config OK (offline: the {} Eureka server{} not contacted)\n",
            urls.len(),
            if urls.len() == 1 { " was" } else { "s were" }
        )),
    }
}

/// Renders a routing table as aligned columns, one line per (route, instance).
pub fn render_routes(table: &RouteTable, source: &str, snapshot: &registry::Snapshot) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "SERVICE".into(),
        "GATEWAY URL".into(),
        "SERVICE URL".into(),
        "INSTANCE".into(),
    ]];
    for svc in table.services() {
        for r in &svc.routes {
            if svc.instances.is_empty() {
                rows.push([
                    svc.service_id.clone(),
                    r.gateway_url.clone(),
                    r.service_url.clone(),
                    "-".into(),
                ]);
            }
            for ep in &svc.instances {
                rows.push([
                    svc.service_id.clone(),
                    r.gateway_url.clone(),
                    r.service_url.clone(),
                    format!(
                        "{}://{}:{} {}",
                        ep.scheme.as_str(),
                        ep.host,
                        ep.port,
                        ep.status
                    ),
                ]);
            }
        }
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "registry: {source}: {} applications, {} instances; {} with WebSocket routes\n",
        snapshot.applications.len(),
        snapshot.instance_count(),
        table.len()
    );
    for row in &rows {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row.iter()).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
