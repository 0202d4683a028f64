//! Configuration: the TOML file (`wsrelay.toml`), parsed strictly and validated into [`Config`].
//!
//! Parsing has two steps, as in rathole's `config.rs`: serde reads a raw form that rejects
//! unknown keys (`deny_unknown_fields`), then [`RawConfig::validate`] checks values and builds
//! the typed [`Config`]. Every error names the key it is about. Durations are written as
//! humantime strings (`"30s"`, `"1m 30s"`, `"250ms"`), sizes as byte-size strings (`"16MiB"`,
//! `"64KiB"`) or plain byte counts. `examples/wsrelay.toml` documents every key.

use std::net::SocketAddr;
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
}

/// The listener's certificate chain and key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
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
#[derive(Debug, Clone)]
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
fn eureka_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid("registry.eureka_urls", format!("{url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(invalid(
                "registry.eureka_urls",
                format!("{url:?} must start with http:// or https://"),
            ))
        }
    }
    if uri.host().is_none() {
        return Err(invalid(
            "registry.eureka_urls",
            format!("{url:?} has no host"),
        ));
    }
    let mut url = url.to_owned();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
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
            Some(TlsFiles { cert, key })
        } else {
            None
        };

        let r = self.registry;
        let registry_source = match (r.eureka_urls, r.file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "registry",
                    "set either registry.eureka_urls or registry.file, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "registry",
                    "one of registry.eureka_urls or registry.file is required",
                ))
            }
            (Some(urls), None) => {
                if urls.is_empty() {
                    return Err(invalid(
                        "registry.eureka_urls",
                        "must list at least one URL",
                    ));
                }
                RegistrySource::Eureka(
                    urls.iter()
                        .map(|u| eureka_url(u))
                        .collect::<Result<_, _>>()?,
                )
            }
            (None, Some(file)) => RegistrySource::File(file),
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
        let registry = RegistryConfig {
            source: registry_source,
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
        };

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
            upstream,
            limits,
            log: LogConfig { level, format },
            admin,
            shutdown_grace,
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
    fn example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/wsrelay.toml");
        let text = std::fs::read_to_string(path).unwrap();
        Config::from_toml(&text, Some(Path::new(path))).unwrap();
    }
}
