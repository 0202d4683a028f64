//! The file's form as serde reads it: every section with `deny_unknown_fields`, every value
//! optional (defaults are applied by validation).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
    /// `[routing]`
    #[serde(default)]
    pub routing: RawRouting,
    /// `[handshake]`
    #[serde(default)]
    pub handshake: RawHandshake,
    /// `[deflate]`
    #[serde(default)]
    pub deflate: RawDeflate,
}

/// `[deflate]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDeflate {
    /// `deflate.enabled`, default true.
    pub enabled: Option<bool>,
    /// `deflate.service`: `"with-client"` (default), `"always"` or `"never"`.
    pub service: Option<String>,
    /// `deflate.context_takeover`, default false.
    pub context_takeover: Option<bool>,
    /// `deflate.max_window_bits`, 9 to 15, default 15.
    pub max_window_bits: Option<u8>,
    /// `deflate.level`, 0 to 9, default 1.
    pub level: Option<u32>,
    /// `deflate.min_message_size`, default 64 bytes.
    pub min_message_size: Option<bytesize::ByteSize>,
}

/// `[handshake]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHandshake {
    /// `handshake.allowed_origins`: browser origins allowed to open sessions; absent = any.
    pub allowed_origins: Option<Vec<String>>,
    /// `handshake.failure`: `"status"` (default) or `"close"`.
    pub failure: Option<String>,
}

/// `[routing]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// `routing.websocket_routes`: `"ws"` (default, gatewayUrl `ws` or `ws/...`) or `"all"`.
    pub websocket_routes: Option<String>,
    /// `routing.instance_id_header`: honour `X-InstanceId`, default true.
    pub instance_id_header: Option<bool>,
    /// `routing.sticky`: `"cookie:NAME"` or `"header:NAME"`; absent = off.
    pub sticky: Option<String>,
    /// `routing.sticky_ttl`, default 8h.
    #[serde(default, with = "humantime_serde")]
    pub sticky_ttl: Option<Duration>,
    /// `routing.sticky_max_entries`, default 100000.
    pub sticky_max_entries: Option<usize>,
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
    /// `admin.recent`: closed sessions and refused upgrades kept for inspection, default 100.
    pub recent: Option<usize>,
}

/// `[shutdown]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// `shutdown.grace`, default 30s.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
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
    /// `tls.http2`: offer HTTP/2 (ALPN h2), default true.
    pub http2: Option<bool>,
    /// `tls.http2_max_streams`: concurrent streams per HTTP/2 connection, default 100.
    pub http2_max_streams: Option<u32>,
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
