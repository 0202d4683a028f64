//! Configuration: the TOML file (`wsrelay.toml`), parsed strictly and validated into [`Config`].
//!
//! Parsing has two steps, as in rathole's `config.rs`: serde reads a raw form that rejects
//! unknown keys (`deny_unknown_fields`), then [`RawConfig::validate`] checks values and builds
//! the typed [`Config`]. Every error names the key it is about. Durations are written as
//! humantime strings (`"30s"`, `"1m 30s"`, `"250ms"`), sizes as byte-size strings (`"16MiB"`,
//! `"64KiB"`) or plain byte counts. `examples/wsrelay.toml` documents every key.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The default config file path used when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/wsrelay/wsrelay.toml";

/// A configuration problem: which key (dotted TOML path, or the file) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys / wrong types (the message has the
    /// line, column and key from the TOML parser).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file (or `<inline>`).
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `registry.refresh_interval`.
        key: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The raw file layout. Field docs are in `examples/wsrelay.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[listen]`
    #[serde(default)]
    pub listen: RawListen,
    /// `[tls]`
    #[serde(default)]
    pub tls: RawTls,
    /// `[registry]`
    #[serde(default)]
    pub registry: RawRegistry,
    /// `[eureka]` (only `[eureka.instance]` today)
    #[serde(default)]
    pub eureka: RawEureka,
    /// `[upstream]`
    #[serde(default)]
    pub upstream: RawUpstream,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[log]`
    #[serde(default)]
    pub log: RawLog,
    /// `[admin]`
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[shutdown]`
    #[serde(default)]
    pub shutdown: RawShutdown,
    /// `[keepalive]`
    #[serde(default)]
    pub keepalive: RawKeepalive,
    /// `[failover]`
    #[serde(default)]
    pub failover: RawFailover,
}

/// `[failover]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    /// `failover.mode`: `"close"` (default) or `"reconnect"`.
    pub mode: Option<String>,
    /// `failover.buffer`: client bytes held while reconnecting, default 1MiB.
    pub buffer: Option<bytesize::ByteSize>,
    /// `failover.deadline`: time to find a new instance, default 10s.
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// `failover.max_attempts`: switches per session, default 3.
    pub max_attempts: Option<u32>,
}

/// `[keepalive]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKeepalive {
    /// `keepalive.interval`: ping each leg this often; absent = off.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// `keepalive.timeout`: extra time to answer, default = interval.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// `[admin]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `admin.allow`: CIDRs allowed to use `/application/*`, default loopback only.
    pub allow: Option<Vec<String>>,
    /// `admin.token`: optional bearer token required on `/application/*`.
    pub token: Option<String>,
}

/// `[shutdown]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// `shutdown.grace`, default 30s.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
}

/// A secret string (e.g. a bearer token): never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value (only for comparing, never for logging).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Access control of the diagnostics endpoints.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Client networks allowed (default `127.0.0.0/8` and `::1/128`).
    pub allow: Vec<ipnet::IpNet>,
    /// Bearer token required in `Authorization: Bearer ...`, if set.
    pub token: Option<Secret>,
}

impl AdminConfig {
    /// Whether `ip` is in one of the allowed networks.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// `[listen]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// `listen.address`, default `0.0.0.0:10010` (the Zowe gateway port).
    pub address: Option<String>,
}

/// `[tls]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `tls.enabled`, default true.
    pub enabled: Option<bool>,
    /// `tls.cert`: PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// `tls.key`: PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// `tls.reload_interval`: periodic re-check of the files besides file events, default 60s.
    #[serde(default, with = "humantime_serde")]
    pub reload_interval: Option<Duration>,
    /// `tls.client_ca`: PEM CA bundle for verifying client certificates.
    pub client_ca: Option<PathBuf>,
    /// `tls.client_auth`: `none`, `optional` or `required` (default `required` with a
    /// `client_ca`, `none` without).
    pub client_auth: Option<String>,
}

/// `[registry]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// `registry.eureka_urls`: Eureka service URLs, like Eureka's `defaultZone` list.
    pub eureka_urls: Option<Vec<String>>,
    /// `registry.file`: a registry file (XML or JSON) instead of Eureka servers.
    pub file: Option<PathBuf>,
    /// `registry.format`: `json` (default) or `xml`, the representation asked from Eureka.
    pub format: Option<String>,
    /// `registry.refresh_interval`, default 30s.
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
    /// `registry.connect_timeout`, default 5s.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// `registry.read_timeout`, default 8s.
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    /// `registry.max_payload_size`, default 64MiB.
    pub max_payload_size: Option<bytesize::ByteSize>,
    /// `[registry.zone_urls]`: Eureka service URLs per zone (`zone-a = ["http://…/eureka/"]`),
    /// like Eureka's `serviceUrl.<zone>` lists.
    pub zone_urls: Option<BTreeMap<String, Vec<String>>>,
    /// `registry.zone`: this agent's zone; its servers are tried first.
    pub zone: Option<String>,
    /// `registry.full_fetch_only`, default false (Eureka's `disableDelta`).
    pub full_fetch_only: Option<bool>,
    /// `registry.vip`: fetch only this VIP address (`GET vips/{vip}`), full fetches only.
    pub vip: Option<String>,
    /// `registry.cache`: last-known-good registry file, written after each successful fetch.
    pub cache: Option<PathBuf>,
    /// `registry.client_cert`: PEM client certificate chain for mutual TLS to Eureka.
    pub client_cert: Option<PathBuf>,
    /// `registry.client_key`: PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `registry.ca_file`: PEM CA bundle trusted for `https` Eureka servers.
    pub ca_file: Option<PathBuf>,
    /// `registry.backoff_bound`, default 10: after timeouts the delay doubles up to this many
    /// refresh intervals.
    pub backoff_bound: Option<u32>,
}

/// `[eureka]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEureka {
    /// `[eureka.instance]`: self-registration; absent = do not register.
    pub instance: Option<RawEurekaInstance>,
}

/// `[eureka.instance]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEurekaInstance {
    /// `eureka.instance.enabled`, default true (the section's presence turns registration on).
    pub enabled: Option<bool>,
    /// `eureka.instance.app`, default `WSRELAY`.
    pub app: Option<String>,
    /// `eureka.instance.instance_id`, default `{host_name}:{app lower-case}:{port}`.
    pub instance_id: Option<String>,
    /// `eureka.instance.host_name`, default the machine's host name.
    pub host_name: Option<String>,
    /// `eureka.instance.ip_addr`, default the listener's address or the outbound interface's.
    pub ip_addr: Option<String>,
    /// `eureka.instance.port`, default the listener's bound port.
    pub port: Option<u16>,
    /// `eureka.instance.vip_address`, default the app name in lower case.
    pub vip_address: Option<String>,
    /// `eureka.instance.secure_vip_address`, default the app name in lower case.
    pub secure_vip_address: Option<String>,
    /// `eureka.instance.renewal_interval`, default 30s.
    #[serde(default, with = "humantime_serde")]
    pub renewal_interval: Option<Duration>,
    /// `eureka.instance.lease_duration`, default 90s.
    #[serde(default, with = "humantime_serde")]
    pub lease_duration: Option<Duration>,
    /// `eureka.instance.home_page_url`, default `{scheme}://{host_name}:{port}/`.
    pub home_page_url: Option<String>,
    /// `eureka.instance.status_page_url`, default `…/application/info`.
    pub status_page_url: Option<String>,
    /// `eureka.instance.health_check_url`, default `…/application/health`.
    pub health_check_url: Option<String>,
    /// `[eureka.instance.metadata]`: string → string.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `[upstream]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `upstream.connect_timeout`, default 45s (the reference gateway's).
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// `upstream.handshake_timeout`, default 30s.
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    /// `upstream.ca_file`: extra PEM CA bundle for `wss` services (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// `upstream.max_attempts`, default 3.
    pub max_attempts: Option<u32>,
    /// `upstream.insecure_skip_verify`, default false: accept any `wss` service certificate.
    pub insecure_skip_verify: Option<bool>,
    /// `upstream.client_cert`: PEM client certificate presented to `wss` services.
    pub client_cert: Option<PathBuf>,
    /// `upstream.client_key`: its private key.
    pub client_key: Option<PathBuf>,
}

/// `[limits]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// `limits.max_message_size`, default 16MiB.
    pub max_message_size: Option<bytesize::ByteSize>,
    /// `limits.max_frame_size`, default = max_message_size.
    pub max_frame_size: Option<bytesize::ByteSize>,
    /// `limits.handshake_timeout`, default 10s.
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    /// `limits.close_timeout`, default 5s.
    #[serde(default, with = "humantime_serde")]
    pub close_timeout: Option<Duration>,
    /// `limits.idle_timeout`, default 1h.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// `limits.write_timeout`, default 60s.
    #[serde(default, with = "humantime_serde")]
    pub write_timeout: Option<Duration>,
    /// `limits.max_sessions`: concurrent sessions, default unlimited.
    pub max_sessions: Option<usize>,
    /// `limits.max_sessions_per_ip`: concurrent sessions per client IP, default unlimited.
    pub max_sessions_per_ip: Option<usize>,
    /// `limits.max_connections`: open client connections, default from the open-file limit.
    pub max_connections: Option<usize>,
}

/// `[log]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `log.level`: a `RUST_LOG`-style filter, default `info`.
    pub level: Option<String>,
    /// `log.format`: `text` or `json`, default `text`.
    pub format: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (file path), shown in diagnostics.
    pub source: Option<PathBuf>,
    /// Listener socket address.
    pub listen: SocketAddr,
    /// Listener TLS; `None` when `tls.enabled = false` (development only).
    pub tls: Option<TlsFiles>,
    /// Registry source and polling.
    pub registry: RegistryConfig,
    /// Self-registration with Eureka (`[eureka.instance]`); `None` = do not register.
    pub eureka_instance: Option<EurekaInstanceConfig>,
    /// Upstream (service) connections.
    pub upstream: UpstreamConfig,
    /// Message and handshake limits.
    pub limits: Limits,
    /// Logging.
    pub log: LogConfig,
    /// Diagnostics endpoint access.
    pub admin: AdminConfig,
    /// Time a shutdown waits for sessions to close (default 30 s).
    pub shutdown_grace: Duration,
    /// Server-side keepalive pings: (interval, timeout); `None` = off (the default).
    pub keepalive: Option<(Duration, Duration)>,
    /// Session failover to another instance (issue 6).
    pub failover: FailoverConfig,
}

/// What happens to an open session when its upstream leg ends abnormally (issue 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Close the client leg with a close code that says what happened (the default, as the
    /// reference gateway does).
    #[default]
    Close,
    /// Keep the client leg open and reconnect to another live instance of the service.
    Reconnect,
}

impl FailoverMode {
    /// Parses a metadata value: `reconnect` / `close` (trimmed, case-insensitive).
    pub fn parse(s: &str) -> Option<FailoverMode> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("reconnect") {
            Some(FailoverMode::Reconnect)
        } else if s.eq_ignore_ascii_case("close") {
            Some(FailoverMode::Close)
        } else {
            None
        }
    }
}

/// `[failover]`: what happens to an open session when its upstream leg ends abnormally
/// (reset or EOF without a close frame, TLS error, keepalive timeout, or a close with 1001
/// Going Away / 1012 Service Restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverConfig {
    /// The default for routes whose metadata has no `apiml.routes.<name>.failover`
    /// (`failover.mode`, default [`FailoverMode::Close`](FailoverMode::Close)).
    pub mode: FailoverMode,
    /// Client message bytes held while reconnecting (`failover.buffer`, default 1 MiB); more
    /// ends the session with 1011.
    pub buffer_bytes: usize,
    /// Time to find an instance that accepts (`failover.deadline`, default 10 s); then 1011.
    pub deadline: Duration,
    /// Switches allowed per session (`failover.max_attempts`, default 3).
    pub max_attempts: u32,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            mode: FailoverMode::Close,
            buffer_bytes: 1 << 20,
            deadline: Duration::from_secs(10),
            max_attempts: 3,
        }
    }
}

/// The listener's certificate chain and key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// How often the files are re-read as a safety net besides file events (default 60 s).
    pub reload_interval: Duration,
    /// Client certificate verification.
    pub client_auth: ClientAuth,
}

/// Whether the listener asks for client certificates (mutual TLS), verified against a CA
/// bundle that is watched and reloaded like the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested.
    None,
    /// A client certificate is requested; if one is sent it must verify against the CA file.
    Optional(PathBuf),
    /// A client certificate that verifies against the CA file is required.
    Required(PathBuf),
}

/// Where the registry comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrySource {
    /// Eureka servers, tried in order; each URL ends with `/` (e.g. `http://host:8761/eureka/`).
    Eureka(Vec<String>),
    /// A registry file in XML or JSON (detected from content).
    File(PathBuf),
}

/// The representation asked from Eureka (`Accept` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// `Accept: application/json`.
    Json,
    /// `Accept: application/xml` (Eureka's default).
    Xml,
}

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Eureka servers or a file.
    pub source: RegistrySource,
    /// Preferred wire format for Eureka fetches.
    pub format: WireFormat,
    /// How often the registry is fetched (Eureka's `registryFetchIntervalSeconds`, default 30 s).
    pub refresh_interval: Duration,
    /// TCP connect timeout to a Eureka server (default 5 s).
    pub connect_timeout: Duration,
    /// Whole-response read timeout from a Eureka server (default 8 s).
    pub read_timeout: Duration,
    /// Largest accepted registry payload in bytes (default 64 MiB); larger ones are refused.
    pub max_payload_size: usize,
    /// Eureka-only settings (their defaults when the source is a file).
    pub eureka: EurekaOptions,
}

/// The zone name of the `registry.eureka_urls` servers (Eureka's `serviceUrl.defaultZone`).
pub const DEFAULT_ZONE: &str = "defaultZone";

/// Eureka client settings of `[registry]`, following Netflix `EurekaClientConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EurekaOptions {
    /// This agent's zone (`registry.zone`): servers of that zone are tried first
    /// (Eureka's `preferSameZoneEureka`); `None` = every server in random order.
    pub zone: Option<String>,
    /// The zone of each server of [`RegistrySource::Eureka`], same order: [`DEFAULT_ZONE`] for
    /// `registry.eureka_urls`, the table key for `registry.zone_urls`.
    pub server_zones: Vec<String>,
    /// Never ask for deltas (`registry.full_fetch_only`; Eureka's `disableDelta`).
    pub full_fetch_only: bool,
    /// Fetch only this VIP address (`GET vips/{vip}`, full fetches only).
    pub vip: Option<String>,
    /// Last-known-good registry file (`registry.cache`); `None` = no cache.
    pub cache: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS to Eureka; set together with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// CA bundle (PEM) trusted for `https` Eureka servers besides the system roots; `None` =
    /// the same trust as `wss` services (system roots plus `upstream.ca_file`).
    pub ca_file: Option<PathBuf>,
    /// After a refresh that timed out the delay doubles, up to `refresh_interval ×
    /// backoff_bound` (Eureka's `cacheRefreshExecutorExponentialBackOffBound`, default 10).
    pub backoff_bound: u32,
}

impl Default for EurekaOptions {
    fn default() -> Self {
        EurekaOptions {
            zone: None,
            server_zones: Vec::new(),
            full_fetch_only: false,
            vip: None,
            cache: None,
            client_cert: None,
            client_key: None,
            ca_file: None,
            backoff_bound: 10,
        }
    }
}

/// Self-registration settings (`[eureka.instance]`): the `InstanceInfo` the agent registers
/// (legacy JSON, as Netflix and Spring Cloud clients send it) and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EurekaInstanceConfig {
    /// `app`, upper-cased as Eureka stores it (default `WSRELAY`).
    pub app: String,
    /// `instanceId`; `None` = `{hostName}:{app lower-case}:{port}` (Spring Cloud's default).
    pub instance_id: Option<String>,
    /// `hostName`; `None` = the machine's host name.
    pub host_name: Option<String>,
    /// `ipAddr`; `None` = the listener's IP, or the outbound interface's when it listens on
    /// every address.
    pub ip_addr: Option<IpAddr>,
    /// Advertised port; `None` = the listener's bound port. It is `securePort` (enabled) when
    /// TLS is on, `port` otherwise.
    pub port: Option<u16>,
    /// `vipAddress`; `None` = the app name in lower case.
    pub vip_address: Option<String>,
    /// `secureVipAddress`; `None` = the app name in lower case.
    pub secure_vip_address: Option<String>,
    /// Heartbeat interval (`leaseInfo.renewalIntervalInSecs`, rounded up to whole seconds on
    /// the wire; default 30 s).
    pub renewal_interval: Duration,
    /// Lease duration without heartbeat before eviction (`leaseInfo.durationInSecs`, default
    /// 90 s); longer than `renewal_interval`.
    pub lease_duration: Duration,
    /// `homePageUrl`; `None` = `{scheme}://{hostName}:{port}/`.
    pub home_page_url: Option<String>,
    /// `statusPageUrl`; `None` = `{scheme}://{hostName}:{port}/application/info`.
    pub status_page_url: Option<String>,
    /// `healthCheckUrl`; `None` = `{scheme}://{hostName}:{port}/application/health`.
    pub health_check_url: Option<String>,
    /// `metadata` entries.
    pub metadata: BTreeMap<String, String>,
}

/// Upstream (service-side) settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// TCP (and TLS) connect timeout per attempt (default 45 s, as the reference gateway).
    pub connect_timeout: Duration,
    /// Time for the upstream's WebSocket handshake answer (default 30 s).
    pub handshake_timeout: Duration,
    /// Extra CA bundle (PEM) trusted for `wss` services besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Instances tried per session before giving up (default 3).
    pub max_attempts: u32,
    /// Accept any certificate and name from `wss` services (default false; labs only). The
    /// session is still encrypted but the service is not authenticated; see
    /// [`crate::tls::upstream_client_config`].
    pub insecure_skip_verify: bool,
    /// Client certificate and key (PEM) presented to `wss` services (API ML services commonly
    /// require the gateway's client certificate); watched and reloaded like the CA bundle.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Limits on messages and handshakes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message (all frames together) in bytes; larger closes with 1009 (default 16 MiB).
    pub max_message_size: usize,
    /// Largest single frame payload in bytes (default: `max_message_size`).
    pub max_frame_size: usize,
    /// Time allowed for the TLS handshake plus the HTTP request head (default 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed for a close handshake to finish once started (default 5 s).
    pub close_timeout: Duration,
    /// A session without data in either direction for this long is closed with 1000
    /// "idle timeout" (default 1 h, as the reference gateway).
    pub idle_timeout: Duration,
    /// Longest write to a peer; a peer that does not read is dropped after it (default 60 s).
    pub write_timeout: Duration,
    /// Concurrent sessions (including upgrades in progress); above it upgrades get 503 with
    /// `Retry-After` (default unlimited).
    pub max_sessions: Option<usize>,
    /// Concurrent sessions per client IP address (default unlimited).
    pub max_sessions_per_ip: Option<usize>,
    /// Open client connections (TLS handshakes, HTTP requests and sessions alike), taken at
    /// accept before any work, as mini-redis's connection semaphore. A connection over it is
    /// not accepted: it waits in the kernel's listen backlog until one closes. Default:
    /// [`default_max_connections`].
    pub max_connections: usize,
}

/// The default of `limits.max_connections`: half the soft open-file limit (a session holds
/// two descriptors, client and service) less 64 kept for the registry, files and admin,
/// at least 64; 16,384 when the limit cannot be read (Linux `/proc/self/limits`) or is
/// unlimited.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        Some(n) => (n / 2).saturating_sub(64).max(64),
        None => 16_384,
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `RUST_LOG`-style filter (`info`, `wsrelay=debug,hyper=warn`).
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

fn positive(
    key: &'static str,
    d: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match d {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(invalid(key, "must be greater than zero (e.g. \"30s\")")),
        Some(d) => Ok(d),
    }
}

fn size(
    key: &'static str,
    s: Option<bytesize::ByteSize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match s {
        None => Ok(default),
        Some(s) if s.as_u64() == 0 => {
            Err(invalid(key, "must be greater than zero (e.g. \"16MiB\")"))
        }
        Some(s) => {
            usize::try_from(s.as_u64()).map_err(|_| invalid(key, "too large for this platform"))
        }
    }
}

/// Checks one Eureka service URL and returns it with a trailing `/`.
fn eureka_url(key: &'static str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid(key, format!("{url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(invalid(
                key,
                format!("{url:?} must start with http:// or https://"),
            ))
        }
    }
    if uri.host().is_none() {
        return Err(invalid(key, format!("{url:?} has no host")));
    }
    let mut url = url.to_owned();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

/// Checks a value used as one URL path segment or a host name: non-empty after trimming, no
/// whitespace, `/`, `?`, `#` or `%`. Returns it trimmed.
fn segment(key: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%'))
    {
        return Err(invalid(
            key,
            format!("{v:?} must not contain {c:?} (it is used in Eureka URL paths)"),
        ));
    }
    Ok(v.to_owned())
}

/// Checks an advertised page URL (`http://` or `https://` with a host).
fn page_url(key: &'static str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let v = v.trim().to_owned();
    let uri: http::Uri = v
        .parse()
        .map_err(|e| invalid(key, format!("{v:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid(
            key,
            format!("{v:?} must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(Some(v))
}

/// Validates `[registry]` into [`RegistryConfig`].
fn validate_registry(r: RawRegistry) -> Result<RegistryConfig, ConfigError> {
    let eureka = r.eureka_urls.is_some() || r.zone_urls.is_some();
    let mut opts = EurekaOptions::default();
    let source = match (eureka, r.file) {
        (true, Some(_)) => {
            return Err(invalid(
                "registry",
                "set either Eureka servers (registry.eureka_urls, registry.zone_urls) or registry.file, not both",
            ))
        }
        (false, None) => {
            return Err(invalid(
                "registry",
                "one of registry.eureka_urls, registry.zone_urls or registry.file is required",
            ))
        }
        (false, Some(file)) => {
            let eureka_only: [(&'static str, bool); 8] = [
                ("registry.zone", r.zone.is_some()),
                ("registry.full_fetch_only", r.full_fetch_only.is_some()),
                ("registry.vip", r.vip.is_some()),
                ("registry.cache", r.cache.is_some()),
                ("registry.client_cert", r.client_cert.is_some()),
                ("registry.client_key", r.client_key.is_some()),
                ("registry.ca_file", r.ca_file.is_some()),
                ("registry.backoff_bound", r.backoff_bound.is_some()),
            ];
            if let Some((key, _)) = eureka_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key,
                    "only applies to Eureka servers, not to registry.file",
                ));
            }
            RegistrySource::File(file)
        }
        (true, None) => {
            let mut urls: Vec<String> = Vec::new();
            let mut add = |key: &'static str, url: &str, zone: &str| {
                let url = eureka_url(key, url)?;
                if urls.contains(&url) {
                    return Err(invalid(key, format!("{url:?} is listed twice")));
                }
                urls.push(url);
                opts.server_zones.push(zone.to_owned());
                Ok(())
            };
            for url in r.eureka_urls.iter().flatten() {
                add("registry.eureka_urls", url, DEFAULT_ZONE)?;
            }
            for (zone, list) in r.zone_urls.iter().flatten() {
                if zone.trim().is_empty() {
                    return Err(invalid("registry.zone_urls", "zone names must not be empty"));
                }
                if list.is_empty() {
                    return Err(invalid(
                        "registry.zone_urls",
                        format!("zone {zone:?} lists no URL"),
                    ));
                }
                for url in list {
                    add("registry.zone_urls", url, zone.trim())?;
                }
            }
            if urls.is_empty() {
                return Err(invalid(
                    "registry.eureka_urls",
                    "must list at least one URL",
                ));
            }
            if let Some(zone) = r.zone.as_deref().map(str::trim) {
                if !opts.server_zones.iter().any(|z| z == zone) {
                    let mut known: Vec<&str> = opts.server_zones.iter().map(String::as_str).collect();
                    known.dedup();
                    return Err(invalid(
                        "registry.zone",
                        format!(
                            "{zone:?} has no servers (zones with servers: {}; registry.eureka_urls are zone {DEFAULT_ZONE:?})",
                            known.join(", ")
                        ),
                    ));
                }
                opts.zone = Some(zone.to_owned());
            }
            opts.full_fetch_only = r.full_fetch_only.unwrap_or(false);
            opts.vip = r
                .vip
                .as_deref()
                .map(|v| segment("registry.vip", v))
                .transpose()?;
            if let Some(cache) = &r.cache {
                if cache.as_os_str().is_empty() {
                    return Err(invalid("registry.cache", "must not be empty"));
                }
            }
            opts.cache = r.cache;
            match (&r.client_cert, &r.client_key) {
                (Some(_), None) => {
                    return Err(invalid(
                        "registry.client_key",
                        "required when registry.client_cert is set",
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "registry.client_cert",
                        "required when registry.client_key is set",
                    ))
                }
                _ => {}
            }
            opts.client_cert = r.client_cert;
            opts.client_key = r.client_key;
            opts.ca_file = r.ca_file;
            opts.backoff_bound = match r.backoff_bound {
                None => 10,
                Some(0) => return Err(invalid("registry.backoff_bound", "must be at least 1")),
                Some(n) => n,
            };
            RegistrySource::Eureka(urls)
        }
    };
    let format = match r.format.as_deref().map(str::trim) {
        None => WireFormat::Json,
        Some(f) if f.eq_ignore_ascii_case("json") => WireFormat::Json,
        Some(f) if f.eq_ignore_ascii_case("xml") => WireFormat::Xml,
        Some(f) => {
            return Err(invalid(
                "registry.format",
                format!("{f:?} is not \"json\" or \"xml\""),
            ))
        }
    };
    Ok(RegistryConfig {
        source,
        format,
        refresh_interval: positive(
            "registry.refresh_interval",
            r.refresh_interval,
            Duration::from_secs(30),
        )?,
        connect_timeout: positive(
            "registry.connect_timeout",
            r.connect_timeout,
            Duration::from_secs(5),
        )?,
        read_timeout: positive(
            "registry.read_timeout",
            r.read_timeout,
            Duration::from_secs(8),
        )?,
        max_payload_size: size("registry.max_payload_size", r.max_payload_size, 64 << 20)?,
        eureka: opts,
    })
}

/// Validates `[eureka.instance]`; `None` when absent or `enabled = false`.
fn validate_instance(
    raw: RawEureka,
    registry: &RegistryConfig,
) -> Result<Option<EurekaInstanceConfig>, ConfigError> {
    let Some(i) = raw.instance else {
        return Ok(None);
    };
    let app =
        segment("eureka.instance.app", i.app.as_deref().unwrap_or("WSRELAY"))?.to_ascii_uppercase();
    let instance_id = i
        .instance_id
        .as_deref()
        .map(|v| segment("eureka.instance.instance_id", v))
        .transpose()?;
    let host_name = i
        .host_name
        .as_deref()
        .map(|v| segment("eureka.instance.host_name", v))
        .transpose()?;
    let ip_addr = match i.ip_addr.as_deref().map(str::trim) {
        None => None,
        Some(v) => Some(v.parse::<IpAddr>().map_err(|_| {
            invalid(
                "eureka.instance.ip_addr",
                format!("{v:?} is not an IP address"),
            )
        })?),
    };
    if i.port == Some(0) {
        return Err(invalid("eureka.instance.port", "must be 1 to 65535"));
    }
    let vip_address = i
        .vip_address
        .as_deref()
        .map(|v| segment("eureka.instance.vip_address", v))
        .transpose()?;
    let secure_vip_address = i
        .secure_vip_address
        .as_deref()
        .map(|v| segment("eureka.instance.secure_vip_address", v))
        .transpose()?;
    let renewal_interval = positive(
        "eureka.instance.renewal_interval",
        i.renewal_interval,
        Duration::from_secs(30),
    )?;
    let lease_duration = positive(
        "eureka.instance.lease_duration",
        i.lease_duration,
        Duration::from_secs(90),
    )?;
    if lease_duration <= renewal_interval {
        return Err(invalid(
            "eureka.instance.lease_duration",
            format!(
                "{} must be longer than eureka.instance.renewal_interval ({})",
                humantime::format_duration(lease_duration),
                humantime::format_duration(renewal_interval)
            ),
        ));
    }
    let metadata = i.metadata.unwrap_or_default();
    if metadata.keys().any(|k| k.trim().is_empty()) {
        return Err(invalid(
            "eureka.instance.metadata",
            "keys must not be empty",
        ));
    }
    let home_page_url = page_url("eureka.instance.home_page_url", i.home_page_url)?;
    let status_page_url = page_url("eureka.instance.status_page_url", i.status_page_url)?;
    let health_check_url = page_url("eureka.instance.health_check_url", i.health_check_url)?;
    // Every key is checked even when registration is off, so typos show up early.
    if !i.enabled.unwrap_or(true) {
        return Ok(None);
    }
    if !matches!(registry.source, RegistrySource::Eureka(_)) {
        return Err(invalid(
            "eureka.instance",
            "self-registration needs Eureka servers (registry.eureka_urls or registry.zone_urls)",
        ));
    }
    Ok(Some(EurekaInstanceConfig {
        app,
        instance_id,
        host_name,
        ip_addr,
        port: i.port,
        vip_address,
        secure_vip_address,
        renewal_interval,
        lease_duration,
        home_page_url,
        status_page_url,
        health_check_url,
        metadata,
    }))
}

impl RawConfig {
    /// Checks every value and builds the typed [`Config`].
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key.
    pub fn validate(self, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let listen_str = self.listen.address.as_deref().unwrap_or("0.0.0.0:10010");
        let listen: SocketAddr = listen_str.parse().map_err(|_| {
            invalid(
                "listen.address",
                format!("{listen_str:?} is not an IP:port socket address (e.g. \"0.0.0.0:10010\")"),
            )
        })?;

        let tls = if self.tls.enabled.unwrap_or(true) {
            let cert = self.tls.cert.ok_or_else(|| {
                invalid(
                    "tls.cert",
                    "required when TLS is enabled (or set tls.enabled = false)",
                )
            })?;
            let key = self.tls.key.ok_or_else(|| {
                invalid(
                    "tls.key",
                    "required when TLS is enabled (or set tls.enabled = false)",
                )
            })?;
            let reload_interval = positive(
                "tls.reload_interval",
                self.tls.reload_interval,
                Duration::from_secs(60),
            )?;
            let client_auth = match (
                self.tls.client_auth.as_deref().map(str::trim),
                self.tls.client_ca,
            ) {
                (None | Some("none"), None) => ClientAuth::None,
                (Some("none"), Some(_)) => {
                    return Err(invalid(
                        "tls.client_auth",
                        "is \"none\" but tls.client_ca is set; remove one",
                    ))
                }
                (None | Some("required"), Some(ca)) => ClientAuth::Required(ca),
                (Some("optional"), Some(ca)) => ClientAuth::Optional(ca),
                (Some("optional" | "required"), None) => {
                    return Err(invalid(
                        "tls.client_ca",
                        "required when tls.client_auth is optional or required",
                    ))
                }
                (Some(other), _) => {
                    return Err(invalid(
                        "tls.client_auth",
                        format!("{other:?} is not \"none\", \"optional\" or \"required\""),
                    ))
                }
            };
            Some(TlsFiles {
                cert,
                key,
                reload_interval,
                client_auth,
            })
        } else {
            None
        };

        let registry = validate_registry(self.registry)?;
        let eureka_instance = validate_instance(self.eureka, &registry)?;

        let u = self.upstream;
        let max_attempts = u.max_attempts.unwrap_or(3);
        if max_attempts == 0 {
            return Err(invalid("upstream.max_attempts", "must be at least 1"));
        }
        let upstream = UpstreamConfig {
            connect_timeout: positive(
                "upstream.connect_timeout",
                u.connect_timeout,
                Duration::from_secs(45),
            )?,
            handshake_timeout: positive(
                "upstream.handshake_timeout",
                u.handshake_timeout,
                Duration::from_secs(30),
            )?,
            ca_file: u.ca_file,
            max_attempts,
            insecure_skip_verify: u.insecure_skip_verify.unwrap_or(false),
            client_cert: match (u.client_cert, u.client_key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(invalid(
                        "upstream.client_key",
                        "required when upstream.client_cert is set",
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "upstream.client_cert",
                        "required when upstream.client_key is set",
                    ))
                }
            },
        };

        let l = self.limits;
        let max_message_size = size("limits.max_message_size", l.max_message_size, 16 << 20)?;
        let max_frame_size = size("limits.max_frame_size", l.max_frame_size, max_message_size)?;
        if max_frame_size > max_message_size {
            return Err(invalid(
                "limits.max_frame_size",
                format!("{max_frame_size} bytes is larger than limits.max_message_size ({max_message_size} bytes)"),
            ));
        }
        let limits = Limits {
            max_message_size,
            max_frame_size,
            handshake_timeout: positive(
                "limits.handshake_timeout",
                l.handshake_timeout,
                Duration::from_secs(10),
            )?,
            close_timeout: positive(
                "limits.close_timeout",
                l.close_timeout,
                Duration::from_secs(5),
            )?,
            idle_timeout: positive(
                "limits.idle_timeout",
                l.idle_timeout,
                Duration::from_secs(3600),
            )?,
            write_timeout: positive(
                "limits.write_timeout",
                l.write_timeout,
                Duration::from_secs(60),
            )?,
            max_sessions: match l.max_sessions {
                Some(0) => {
                    return Err(invalid(
                        "limits.max_sessions",
                        "must be at least 1 (remove the key for no limit)",
                    ))
                }
                other => other,
            },
            max_sessions_per_ip: match l.max_sessions_per_ip {
                Some(0) => {
                    return Err(invalid(
                        "limits.max_sessions_per_ip",
                        "must be at least 1 (remove the key for no limit)",
                    ))
                }
                other => other,
            },
            max_connections: match l.max_connections {
                Some(0) => return Err(invalid(
                    "limits.max_connections",
                    "must be at least 1 (remove the key for the default from the open-file limit)",
                )),
                Some(n) => n,
                None => default_max_connections(),
            },
        };

        let allow = match self.admin.allow {
            None => {
                let mut v = vec![ipnet::IpNet::from(std::net::IpAddr::from(
                    std::net::Ipv6Addr::LOCALHOST,
                ))];
                if let Ok(n) = ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8) {
                    v.push(n.into());
                }
                v
            }
            Some(list) => list
                .iter()
                .map(|c| {
                    let c = c.trim();
                    c.parse::<ipnet::IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            invalid(
                                "admin.allow",
                                format!(
                                    "{c:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP address"
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let token = match self.admin.token {
            Some(t) if t.trim().is_empty() => {
                return Err(invalid(
                    "admin.token",
                    "must not be empty (remove the key to disable)",
                ))
            }
            Some(t) => Some(Secret(t.trim().to_owned())),
            None => None,
        };
        let admin = AdminConfig { allow, token };
        let shutdown_grace = positive(
            "shutdown.grace",
            self.shutdown.grace,
            Duration::from_secs(30),
        )?;
        let keepalive = match (self.keepalive.interval, self.keepalive.timeout) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid(
                    "keepalive.interval",
                    "required when keepalive.timeout is set",
                ))
            }
            (Some(i), t) => {
                let i = positive("keepalive.interval", Some(i), i)?;
                Some((i, positive("keepalive.timeout", t, i)?))
            }
        };

        let failover = {
            let f = &self.failover;
            let mode = match f.mode.as_deref() {
                None => FailoverMode::Close,
                Some(m) => FailoverMode::parse(m).ok_or_else(|| {
                    invalid(
                        "failover.mode",
                        format!("{m:?} is not \"close\" or \"reconnect\""),
                    )
                })?,
            };
            let max_attempts = f.max_attempts.unwrap_or(3);
            if max_attempts == 0 {
                return Err(invalid(
                    "failover.max_attempts",
                    "must be at least 1 (use failover.mode = \"close\" to turn failover off)",
                ));
            }
            FailoverConfig {
                mode,
                buffer_bytes: size("failover.buffer", f.buffer, 1 << 20)?,
                deadline: positive("failover.deadline", f.deadline, Duration::from_secs(10))?,
                max_attempts,
            }
        };

        let level = self.log.level.unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            return Err(invalid(
                "log.level",
                format!("{level:?} is not a valid filter: {e}"),
            ));
        }
        let format = match self.log.format.as_deref().map(str::trim) {
            None => LogFormat::Text,
            Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(f) => {
                return Err(invalid(
                    "log.format",
                    format!("{f:?} is not \"text\" or \"json\""),
                ))
            }
        };

        Ok(Config {
            source,
            listen,
            tls,
            registry,
            eureka_instance,
            upstream,
            limits,
            log: LogConfig { level, format },
            admin,
            shutdown_grace,
            keepalive,
            failover,
        })
    }
}

impl Config {
    /// Parses and validates TOML text. `origin` names the text in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for TOML/unknown-key/type errors, [`ConfigError::Invalid`] for values.
    pub fn from_toml(text: &str, origin: Option<&Path>) -> Result<Config, ConfigError> {
        let name = origin.map_or_else(|| "<inline>".to_owned(), |p| p.display().to_string());
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name,
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        raw.validate(origin.map(Path::to_path_buf))
    }

    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, otherwise as [`Config::from_toml`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key.to_owned(),
            other => other.to_string(),
        }
    }

    #[test]
    fn minimal_file_source_gets_defaults() {
        let c = Config::from_toml(
            "[tls]\nenabled = false\n[registry]\nfile = \"r.xml\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:10010".parse().unwrap());
        assert!(c.tls.is_none());
        assert_eq!(c.registry.source, RegistrySource::File("r.xml".into()));
        assert_eq!(c.registry.refresh_interval, Duration::from_secs(30));
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(45));
        assert_eq!(c.limits.max_message_size, 16 << 20);
        assert_eq!(c.limits.max_frame_size, 16 << 20);
        assert_eq!(c.upstream.max_attempts, 3);
    }

    #[test]
    fn max_connections_defaults_from_the_open_file_limit_and_refuses_zero() {
        let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
        let c = Config::from_toml(base, None).unwrap();
        assert_eq!(c.limits.max_connections, default_max_connections());
        assert!(c.limits.max_connections >= 64);
        let c = Config::from_toml(&format!("{base}[limits]\nmax_connections = 7\n"), None).unwrap();
        assert_eq!(c.limits.max_connections, 7);
        let e =
            Config::from_toml(&format!("{base}[limits]\nmax_connections = 0\n"), None).unwrap_err();
        assert_eq!(key_of(e), "limits.max_connections");
    }

    #[test]
    fn durations_sizes_and_urls_parse() {
        let c = Config::from_toml(
            r#"
            [tls]
            cert = "c.pem"
            key = "k.pem"
            [registry]
            eureka_urls = ["http://a:8761/eureka", "https://u:p@b/eureka/"]
            refresh_interval = "1m 30s"
            format = "XML"
            [limits]
            max_message_size = "1MiB"
            max_frame_size = "64KiB"
            "#,
            None,
        )
        .unwrap();
        assert_eq!(
            c.registry.source,
            RegistrySource::Eureka(vec![
                "http://a:8761/eureka/".into(),
                "https://u:p@b/eureka/".into()
            ])
        );
        assert_eq!(c.registry.refresh_interval, Duration::from_secs(90));
        assert_eq!(c.registry.format, WireFormat::Xml);
        assert_eq!(c.limits.max_message_size, 1 << 20);
        assert_eq!(c.limits.max_frame_size, 64 << 10);
        assert_eq!(c.tls.unwrap().cert, PathBuf::from("c.pem"));
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
        let e =
            Config::from_toml(&format!("{base}[listen]\naddress = \"nope\"\n"), None).unwrap_err();
        assert_eq!(key_of(e), "listen.address");
        let e = Config::from_toml("[registry]\nfile = \"r\"\n", None).unwrap_err();
        assert_eq!(key_of(e), "tls.cert");
        let e = Config::from_toml("[tls]\nenabled = false\n", None).unwrap_err();
        assert_eq!(key_of(e), "registry");
        let e = Config::from_toml(&format!("{base}refresh_interval = \"0s\"\n"), None).unwrap_err();
        assert_eq!(key_of(e), "registry.refresh_interval");
        let e = Config::from_toml(
            &format!("{base}[limits]\nmax_frame_size = \"2MiB\"\nmax_message_size = \"1MiB\"\n"),
            None,
        )
        .unwrap_err();
        assert_eq!(key_of(e), "limits.max_frame_size");
        let e = Config::from_toml(
            "[tls]\nenabled = false\n[registry]\neureka_urls = [\"ftp://x/\"]\n",
            None,
        )
        .unwrap_err();
        assert_eq!(key_of(e), "registry.eureka_urls");
        let e = Config::from_toml(&format!("{base}[log]\nformat = \"xml\"\n"), None).unwrap_err();
        assert_eq!(key_of(e), "log.format");
    }

    #[test]
    fn unknown_keys_and_bad_types_are_rejected_with_the_name() {
        let e = Config::from_toml(
            "[tls]\nenabled = false\nfoo = 1\n[registry]\nfile = \"r\"\n",
            None,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("foo"), "{msg}");
        let e = Config::from_toml(
            "[tls]\nenabled = false\n[registry]\nfile = \"r\"\nrefresh_interval = \"soon\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("refresh_interval"), "{e}");
    }

    #[test]
    fn admin_defaults_to_loopback_and_takes_cidrs() {
        let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
        let c = Config::from_toml(base, None).unwrap();
        assert!(c.admin.allows("127.0.0.1".parse().unwrap()));
        assert!(c.admin.allows("127.9.9.9".parse().unwrap()));
        assert!(c.admin.allows("::1".parse().unwrap()));
        assert!(c.admin.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.admin.allows("10.1.2.3".parse().unwrap()));
        assert!(!c.admin.allows("::2".parse().unwrap()));
        assert!(c.admin.token.is_none());
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        let c = Config::from_toml(&format!("{base}[admin]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\ntoken = \"s3cret\"\n[shutdown]\ngrace = \"5s\"\n"), None).unwrap();
        assert!(c.admin.allows("10.1.2.3".parse().unwrap()));
        assert!(c.admin.allows("192.0.2.7".parse().unwrap()));
        assert!(!c.admin.allows("127.0.0.1".parse().unwrap()));
        assert_eq!(c.admin.token.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{:?}", c.admin).contains("s3cret"));
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        let e =
            Config::from_toml(&format!("{base}[admin]\nallow = [\"nope\"]\n"), None).unwrap_err();
        assert_eq!(key_of(e), "admin.allow");
    }

    #[test]
    fn upstream_insecure_skip_verify_is_off_unless_set() {
        let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
        let c = Config::from_toml(base, None).unwrap();
        assert!(!c.upstream.insecure_skip_verify);
        let c = Config::from_toml(
            &format!("{base}[upstream]\ninsecure_skip_verify = true\n"),
            None,
        )
        .unwrap();
        assert!(c.upstream.insecure_skip_verify);
        let e = Config::from_toml(
            &format!("{base}[upstream]\ninsecure_skip_verify = \"yes\"\n"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("insecure_skip_verify"), "{e}");
    }

    const NO_TLS: &str = "[tls]\nenabled = false\n";

    #[test]
    fn eureka_registry_defaults_and_zones() {
        let c = Config::from_toml(
            &format!(
                "{NO_TLS}[registry]\neureka_urls = [\"http://a/eureka\"]\n[registry.zone_urls]\nz1 = [\"http://b/eureka/\", \"https://u:p@c/eureka\"]\n"
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            c.registry.source,
            RegistrySource::Eureka(vec![
                "http://a/eureka/".into(),
                "http://b/eureka/".into(),
                "https://u:p@c/eureka/".into()
            ])
        );
        assert_eq!(
            c.registry.eureka,
            EurekaOptions {
                server_zones: vec![DEFAULT_ZONE.into(), "z1".into(), "z1".into()],
                ..EurekaOptions::default()
            }
        );
        assert_eq!(c.registry.eureka.backoff_bound, 10);
        assert!(!c.registry.eureka.full_fetch_only);
        assert!(c.eureka_instance.is_none());
        // zone_urls alone is enough.
        let c = Config::from_toml(
            &format!(
                "{NO_TLS}[registry]\nzone = \"z\"\nzone_urls = {{ z = [\"http://b/eureka/\"] }}\n"
            ),
            None,
        )
        .unwrap();
        assert_eq!(c.registry.eureka.zone.as_deref(), Some("z"));
    }

    #[test]
    fn eureka_client_and_instance_keys_parse() {
        let c = Config::from_toml(
            &format!(
                r#"{NO_TLS}
                [registry]
                eureka_urls = ["https://h:10011/eureka/"]
                zone = "defaultZone"
                full_fetch_only = true
                vip = "discoverableclient"
                cache = "/var/lib/wsrelay/registry.json"
                client_cert = "c.pem"
                client_key = "k.pem"
                ca_file = "ca.pem"
                backoff_bound = 4
                [eureka.instance]
                app = "wsrelay-gw"
                instance_id = "gw1:wsrelay:10010"
                host_name = "gw1.example.com"
                ip_addr = "10.0.0.5"
                port = 10010
                vip_address = "wsrelay"
                secure_vip_address = "wsrelay-secure"
                renewal_interval = "10s"
                lease_duration = "30s"
                home_page_url = "https://gw1.example.com:10010/"
                status_page_url = "https://gw1.example.com:10010/application/info"
                health_check_url = "https://gw1.example.com:10010/application/health"
                [eureka.instance.metadata]
                "apiml.service.title" = "WebSocket relay"
                "#
            ),
            None,
        )
        .unwrap();
        let e = &c.registry.eureka;
        assert_eq!(e.zone.as_deref(), Some(DEFAULT_ZONE));
        assert!(e.full_fetch_only);
        assert_eq!(e.vip.as_deref(), Some("discoverableclient"));
        assert_eq!(
            e.cache.as_deref(),
            Some(Path::new("/var/lib/wsrelay/registry.json"))
        );
        assert_eq!(e.client_cert.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(e.client_key.as_deref(), Some(Path::new("k.pem")));
        assert_eq!(e.ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(e.backoff_bound, 4);
        let i = c.eureka_instance.unwrap();
        assert_eq!(i.app, "WSRELAY-GW");
        assert_eq!(i.instance_id.as_deref(), Some("gw1:wsrelay:10010"));
        assert_eq!(i.ip_addr, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(i.port, Some(10010));
        assert_eq!(i.renewal_interval, Duration::from_secs(10));
        assert_eq!(i.lease_duration, Duration::from_secs(30));
        assert_eq!(i.metadata["apiml.service.title"], "WebSocket relay");
        // Defaults, and `enabled = false`.
        let base = format!("{NO_TLS}[registry]\neureka_urls = [\"http://h/eureka/\"]\n");
        let i = Config::from_toml(&format!("{base}[eureka.instance]\n"), None)
            .unwrap()
            .eureka_instance
            .unwrap();
        assert_eq!(i.app, "WSRELAY");
        assert_eq!(i.renewal_interval, Duration::from_secs(30));
        assert_eq!(i.lease_duration, Duration::from_secs(90));
        assert!(i.instance_id.is_none() && i.host_name.is_none() && i.port.is_none());
        let off = Config::from_toml(&format!("{base}[eureka.instance]\nenabled = false\n"), None)
            .unwrap();
        assert!(off.eureka_instance.is_none());
    }

    #[test]
    fn eureka_errors_name_the_key() {
        let eureka = format!("{NO_TLS}[registry]\neureka_urls = [\"http://h/eureka/\"]\n");
        let file = format!("{NO_TLS}[registry]\nfile = \"r.xml\"\n");
        let cases: &[(String, &str)] = &[
            (format!("{eureka}zone = \"nowhere\"\n"), "registry.zone"),
            (format!("{eureka}vip = \"a/b\"\n"), "registry.vip"),
            (format!("{eureka}vip = \"\"\n"), "registry.vip"),
            (format!("{eureka}client_cert = \"c.pem\"\n"), "registry.client_key"),
            (format!("{eureka}client_key = \"k.pem\"\n"), "registry.client_cert"),
            (format!("{eureka}backoff_bound = 0\n"), "registry.backoff_bound"),
            (format!("{eureka}cache = \"\"\n"), "registry.cache"),
            (format!("{eureka}[registry.zone_urls]\nz = []\n"), "registry.zone_urls"),
            (
                format!("{eureka}[registry.zone_urls]\nz = [\"http://h/eureka\"]\n"),
                "registry.zone_urls",
            ),
            (
                format!("{NO_TLS}[registry]\nzone_urls = {{ z = [\"ftp://h/\"] }}\n"),
                "registry.zone_urls",
            ),
            (format!("{NO_TLS}[registry]\neureka_urls = []\n"), "registry.eureka_urls"),
            (format!("{file}cache = \"c.json\"\n"), "registry.cache"),
            (format!("{file}vip = \"x\"\n"), "registry.vip"),
            (
                format!("{NO_TLS}[registry]\nfile = \"r\"\nzone_urls = {{ z = [\"http://h/\"] }}\n"),
                "registry",
            ),
            (format!("{file}[eureka.instance]\n"), "eureka.instance"),
            (
                format!("{eureka}[eureka.instance]\nrenewal_interval = \"30s\"\nlease_duration = \"30s\"\n"),
                "eureka.instance.lease_duration",
            ),
            (
                format!("{eureka}[eureka.instance]\nrenewal_interval = \"0s\"\n"),
                "eureka.instance.renewal_interval",
            ),
            (format!("{eureka}[eureka.instance]\nip_addr = \"10.0.0\"\n"), "eureka.instance.ip_addr"),
            (format!("{eureka}[eureka.instance]\napp = \"a b\"\n"), "eureka.instance.app"),
            (
                format!("{eureka}[eureka.instance]\ninstance_id = \"a/b\"\n"),
                "eureka.instance.instance_id",
            ),
            (format!("{eureka}[eureka.instance]\nhost_name = \"\"\n"), "eureka.instance.host_name"),
            (format!("{eureka}[eureka.instance]\nport = 0\n"), "eureka.instance.port"),
            (
                format!("{eureka}[eureka.instance]\nhealth_check_url = \"ftp://h/\"\n"),
                "eureka.instance.health_check_url",
            ),
            (
                format!("{eureka}[eureka.instance]\nvip_address = \"a b\"\n"),
                "eureka.instance.vip_address",
            ),
            (
                format!("{eureka}[eureka.instance.metadata]\n\"\" = \"x\"\n"),
                "eureka.instance.metadata",
            ),
        ];
        for (toml, key) in cases {
            let e = Config::from_toml(toml, None).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{toml}: {e}");
            assert_eq!(key_of(e), *key, "{toml}");
        }
        let e =
            Config::from_toml(&format!("{eureka}[eureka.instance]\nnope = 1\n"), None).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn failover_section_defaults_values_and_errors() {
        let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
        let c = Config::from_toml(base, None).unwrap();
        assert_eq!(c.failover, FailoverConfig::default());
        assert_eq!(c.failover.mode, FailoverMode::Close);
        let c = Config::from_toml(
            &format!("{base}[failover]\nmode = \"Reconnect\"\nbuffer = \"64KiB\"\ndeadline = \"2s\"\nmax_attempts = 1\n"),
            None,
        )
        .unwrap();
        assert_eq!(
            c.failover,
            FailoverConfig {
                mode: FailoverMode::Reconnect,
                buffer_bytes: 64 << 10,
                deadline: Duration::from_secs(2),
                max_attempts: 1,
            }
        );
        for (body, key) in [
            ("mode = \"sometimes\"", "failover.mode"),
            ("buffer = 0", "failover.buffer"),
            ("deadline = \"0s\"", "failover.deadline"),
            ("max_attempts = 0", "failover.max_attempts"),
        ] {
            let e = Config::from_toml(&format!("{base}[failover]\n{body}\n"), None).unwrap_err();
            assert_eq!(key_of(e), key, "{body}");
        }
    }

    #[test]
    fn example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/wsrelay.toml");
        let text = std::fs::read_to_string(path).unwrap();
        Config::from_toml(&text, Some(Path::new(path))).unwrap();
    }
}
