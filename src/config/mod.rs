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

mod print;
mod raw;
mod validate;

pub use raw::*;
pub use validate::check_log_filter;

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
    /// line, column and the line itself from the TOML parser, over several lines).
    #[error("config file {path} is not valid:\n{message}")]
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

pub(crate) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
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
    /// Closed sessions and refused upgrades kept for `/application/websockets/closed` and
    /// `/refused` (`admin.recent`, default 100, at most 10,000; 0 keeps none).
    pub recent: usize,
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
    /// Which routes take upgrades and how an instance is chosen (`[routing]`).
    pub routing: RoutingConfig,
    /// Browser-facing handshake policy (`[handshake]`).
    pub handshake: HandshakeConfig,
    /// permessage-deflate on each leg (`[deflate]`).
    pub deflate: DeflateConfig,
}

/// `[deflate]`: permessage-deflate (RFC 7692), negotiated on each leg on its own (issue 17).
/// The relay inflates and deflates only where the legs differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// `deflate.enabled` (default true): accept a client's offer (every browser makes one).
    pub enabled: bool,
    /// `deflate.service` (default [`ServiceDeflate::WithClient`]): when to offer it to the
    /// service.
    pub service: ServiceDeflate,
    /// `deflate.context_takeover` (default false): let compression contexts live from one
    /// message to the next. Off, wsrelay asks both peers for `*_no_context_takeover` and an
    /// idle session holds no zlib state; on, a leg keeps up to about 300 KiB of it (§7.1.1).
    pub context_takeover: bool,
    /// `deflate.max_window_bits` (9 to 15, default 15): the largest LZ77 window wsrelay's
    /// compressor uses (2^bits bytes; §7.1.2).
    pub max_window_bits: u8,
    /// `deflate.level` (0 to 9, default 1): zlib's compression level; 1 is the fastest.
    pub level: u32,
    /// `deflate.min_message_size` (bytes, default 64): smaller messages are sent uncompressed
    /// (RSV1 clear, §6).
    pub min_message_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: true,
            service: ServiceDeflate::WithClient,
            context_takeover: false,
            max_window_bits: 15,
            level: 1,
            min_message_size: 64,
        }
    }
}

/// When wsrelay offers permessage-deflate to the service (`deflate.service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceDeflate {
    /// `"with-client"`: only when the client leg agreed to it, so compressed messages can
    /// cross without being inflated and deflated again.
    WithClient,
    /// `"always"`: whatever the client did.
    Always,
    /// `"never"`: the service leg is never compressed.
    Never,
}

impl ServiceDeflate {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceDeflate::WithClient => "with-client",
            ServiceDeflate::Always => "always",
            ServiceDeflate::Never => "never",
        }
    }
}

/// `[handshake]`: which browser origins may open sessions and how a failed handshake is
/// answered. Routes may set both in their metadata (`apiml.routes.<name>.allowedOrigins`,
/// `apiml.routes.<name>.handshakeFailure`), which wins over these defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeConfig {
    /// `handshake.allowed_origins`; `None` (the default) = any origin.
    pub allowed_origins: Option<crate::session::origin::AllowedOrigins>,
    /// `handshake.failure` (default [`FailureAnswer::Status`]).
    pub failure: FailureAnswer,
}

/// How a handshake that fails after a valid upgrade request is answered
/// (`handshake.failure`, metadata `apiml.routes.<name>.handshakeFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAnswer {
    /// The HTTP status that says what failed (404, 403, 502, 503, 504) with a JSON body: what
    /// scripts and proxies read (the default).
    #[default]
    Status,
    /// 101, then at once a close frame with a code and the reason: what a browser app can
    /// read (a browser shows a failed handshake as close 1006 with no reason). 1008 for
    /// refusals (4xx), 1013 Try Again Later for 503, 1011 for 502 and 504; as Zowe v2 closed
    /// its failed sessions (with 1003 and 1012 there).
    Close,
}

impl FailureAnswer {
    /// `"status"` or `"close"`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAnswer::Status => "status",
            FailureAnswer::Close => "close",
        }
    }

    /// Parses `status` / `close` (trimmed, case-insensitive).
    pub fn parse(s: &str) -> Option<FailureAnswer> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("status") {
            Some(FailureAnswer::Status)
        } else if s.eq_ignore_ascii_case("close") {
            Some(FailureAnswer::Close)
        } else {
            None
        }
    }
}

/// Which `apiml.routes.*` routes accept WebSocket upgrades (`routing.websocket_routes`).
///
/// Zowe v2's gateway proxied WebSockets only on `ws/...` routes (its `WebSocketProxyServerHandler`
/// was mapped to them); the v3 gateway is Spring Cloud Gateway, whose `WebsocketRoutingFilter`
/// upgrades on any route an upgrade request reaches (`/{serviceId}/{gatewayUrl}/**`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteScope {
    /// Only routes whose gatewayUrl is `ws` or starts with `ws/` (the default: what Zowe v2
    /// and earlier wsrelay releases route; REST routes stay 404 for upgrades).
    #[default]
    WsPrefixed,
    /// Every route (Zowe v3).
    All,
}

impl RouteScope {
    /// Whether a route with this normalised gatewayUrl accepts upgrades.
    pub fn admits(self, gateway_url: &str) -> bool {
        match self {
            RouteScope::All => true,
            RouteScope::WsPrefixed => gateway_url == "ws" || gateway_url.starts_with("ws/"),
        }
    }

    /// `"ws"` or `"all"`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteScope::WsPrefixed => "ws",
            RouteScope::All => "all",
        }
    }
}

/// Where the sticky key of a request comes from (`routing.sticky = "cookie:NAME"` or
/// `"header:NAME"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// The value of the cookie `NAME` (RFC 6265 §5.4 `Cookie` header; Zowe's SSO cookie is
    /// `apimlAuthenticationToken`).
    Cookie(String),
    /// The value of the request header `NAME` (the first one when repeated).
    Header(http::HeaderName),
}

/// `routing.sticky*`: the key and the table's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// Where the key comes from.
    pub key: StickyKey,
    /// An entry unused for this long is forgotten (`routing.sticky_ttl`, default 8 h).
    pub ttl: Duration,
    /// Entries kept at most (`routing.sticky_max_entries`, default 100,000, at most
    /// 10,000,000; about 100 bytes each, allocated as entries are used).
    pub max_entries: usize,
}

impl StickyKey {
    /// `cookie:NAME` or `header:NAME`, as written in the config.
    pub fn describe(&self) -> String {
        match self {
            StickyKey::Cookie(n) => format!("cookie:{n}"),
            StickyKey::Header(n) => format!("header:{n}"),
        }
    }
}

/// `[routing]`: which routes accept WebSocket upgrades and how an instance is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// `routing.websocket_routes`: `ws` (default) or `all`; see RouteScope.
    /// Applied at start (a reload asks for a restart).
    pub websocket_routes: RouteScope,
    /// `routing.instance_id_header` (default true): a request's `X-InstanceId` header names
    /// the instance to use, as in Zowe v3 (`DeterministicLoadBalancer`); unknown → 404, not
    /// UP → 503, and no other instance is tried.
    pub instance_id_header: bool,
    /// `routing.sticky*`: sticky sessions; `None` (the default) = round robin only.
    pub sticky: Option<StickyConfig>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            websocket_routes: RouteScope::WsPrefixed,
            instance_id_header: true,
            sticky: None,
        }
    }
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
    /// `"close"` or `"reconnect"`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverMode::Close => "close",
            FailoverMode::Reconnect => "reconnect",
        }
    }

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
    /// HTTP/2 on the listener (ALPN `h2`, WebSockets over it by RFC 8441); `None` when
    /// `tls.http2 = false`.
    pub http2: Option<Http2Limits>,
}

/// Limits of an HTTP/2 client connection (`tls.http2_*`). The rest of h2's attack surface has
/// fixed bounds: 16 KiB of request headers, 256 KiB stream and 1 MiB connection flow-control
/// windows (the backpressure of a session), 64 KiB of queued output per stream, at most 20
/// streams reset by the client before the server saw them (rapid reset) and 1,024 streams the
/// server had to reset, per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// `tls.http2_max_streams` (default 100): concurrent streams (sessions and admin requests)
    /// per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams: u32,
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

/// The TOML parser's message with serde's type words said for people: `expected u32` →
/// `expected a whole number (0 to 4294967295)`, bytesize's `expected parsable string` → what a
/// size looks like, humantime's errors → what a duration looks like. Kept multi-line, each
/// line indented.
fn explain_parse_error(message: &str) -> String {
    let mut m = message.to_owned();
    for (serde, human) in [
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected u32", "expected a whole number (0 to 4294967295)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        (
            "expected parsable string",
            "expected a size: a byte count (16777216) or a string such as \"16MiB\", \"64KiB\", \"1GB\"",
        ),
        ("expected a boolean", "expected true or false (without quotes)"),
    ] {
        m = m.replace(serde, human);
    }
    if m.contains("time unit") || m.contains("expected number") || m.contains("a duration") {
        m.push_str("\n  durations are strings such as \"30s\", \"250ms\", \"1m 30s\", \"8h\"");
    }
    m.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
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
            message: explain_parse_error(e.to_string().trim_end()),
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
mod tests;
