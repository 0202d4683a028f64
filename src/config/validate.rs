//! Validation: [`RawConfig::validate`] checks every value and builds the typed [`Config`];
//! each error names its key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::*;

pub(super) fn positive(
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

pub(super) fn size(
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
pub(super) fn eureka_url(key: &'static str, url: &str) -> Result<String, ConfigError> {
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
pub(super) fn segment(key: &'static str, value: &str) -> Result<String, ConfigError> {
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
pub(super) fn page_url(
    key: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ConfigError> {
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
pub(super) fn validate_registry(r: RawRegistry) -> Result<RegistryConfig, ConfigError> {
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
/// The levels a log filter directive may name (`tracing`'s, and `off`).
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `log.level` / `RUST_LOG` filter more strictly than `tracing_subscriber` does: that
/// takes `verbose` or `inof` as a target name and then logs nothing at all. Every directive
/// must be a level (`info`) or `target=level` (`wsrelay=debug`, `hyper::proto=warn`), and
/// the whole must parse as an `EnvFilter`.
///
/// # Errors
/// A message naming the directive and what is accepted.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let accepted = "a level (trace, debug, info, warn, error, off) or target=level, comma-separated, e.g. \"info,wsrelay=debug\"";
    if filter.trim().is_empty() {
        return Err(format!("is empty; expected {accepted}"));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => directive,
            None => directive,
        };
        if !LEVELS.iter().any(|l| level.trim().eq_ignore_ascii_case(l)) {
            return Err(format!(
                "{directive:?} is not {accepted} (a bare word is not a level: write \"{directive}=trace\" to log one target)"
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?} is not a valid filter: {e}"))
}

/// `routing.sticky`: `cookie:NAME` (an RFC 6265 cookie name) or `header:NAME` (an HTTP
/// field name).
fn sticky_key(v: &str) -> Result<crate::config::StickyKey, ConfigError> {
    use crate::config::StickyKey;
    let expected =
        "expected \"cookie:NAME\" or \"header:NAME\", e.g. \"cookie:apimlAuthenticationToken\"";
    let (kind, name) = v
        .split_once(':')
        .ok_or_else(|| invalid("routing.sticky", format!("{v:?}: {expected}")))?;
    let name = name.trim();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    match kind.trim() {
        k if k.eq_ignore_ascii_case("cookie") && token => Ok(StickyKey::Cookie(name.to_owned())),
        k if k.eq_ignore_ascii_case("header") && token => {
            http::HeaderName::from_bytes(name.as_bytes())
                .map(StickyKey::Header)
                .map_err(|_| invalid("routing.sticky", format!("{name:?} is not a header name")))
        }
        _ => Err(invalid(
            "routing.sticky",
            format!("{v:?}: {expected} (NAME a token: letters, digits, !#$%&'*+-.^_`|~)"),
        )),
    }
}

pub(super) fn validate_instance(
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
            let http2 =
                match (self.tls.http2.unwrap_or(true), self.tls.http2_max_streams) {
                    (false, _) => None,
                    (true, Some(0)) => return Err(invalid(
                        "tls.http2_max_streams",
                        "0 would refuse every request: use tls.http2 = false to turn HTTP/2 off",
                    )),
                    (true, n) => Some(Http2Limits {
                        max_streams: n.unwrap_or(100),
                    }),
                };
            Some(TlsFiles {
                cert,
                key,
                reload_interval,
                client_auth,
                http2,
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
        let recent = self.admin.recent.unwrap_or(100);
        if recent > 10_000 {
            return Err(invalid(
                "admin.recent",
                "must be 0 to 10000 (each entry is about 300 bytes)",
            ));
        }
        let admin = AdminConfig {
            allow,
            token,
            recent,
        };
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

        let routing = {
            let r = &self.routing;
            let websocket_routes = match r.websocket_routes.as_deref().map(str::trim) {
                None => crate::config::RouteScope::WsPrefixed,
                Some(v) if v.eq_ignore_ascii_case("ws") => crate::config::RouteScope::WsPrefixed,
                Some(v) if v.eq_ignore_ascii_case("all") => crate::config::RouteScope::All,
                Some(v) => {
                    return Err(invalid(
                        "routing.websocket_routes",
                        format!("{v:?} is not \"ws\" (gatewayUrl ws or ws/...) or \"all\" (every apiml.routes route)"),
                    ))
                }
            };
            let sticky = match r.sticky.as_deref().map(str::trim) {
                None => {
                    for (key, set) in [
                        ("routing.sticky_ttl", r.sticky_ttl.is_some()),
                        ("routing.sticky_max_entries", r.sticky_max_entries.is_some()),
                    ] {
                        if set {
                            return Err(invalid(key, "only applies with routing.sticky"));
                        }
                    }
                    None
                }
                Some(v) => {
                    let key = sticky_key(v)?;
                    let max_entries = r.sticky_max_entries.unwrap_or(100_000);
                    if !(1..=10_000_000).contains(&max_entries) {
                        return Err(invalid(
                            "routing.sticky_max_entries",
                            "must be 1 to 10000000 (about 100 bytes per entry in use)",
                        ));
                    }
                    Some(crate::config::StickyConfig {
                        key,
                        ttl: positive(
                            "routing.sticky_ttl",
                            r.sticky_ttl,
                            Duration::from_secs(8 * 3600),
                        )?,
                        max_entries,
                    })
                }
            };
            RoutingConfig {
                websocket_routes,
                instance_id_header: r.instance_id_header.unwrap_or(true),
                sticky,
            }
        };

        let handshake = {
            let h = &self.handshake;
            let allowed_origins = match &h.allowed_origins {
                None => None,
                Some(list) => Some(
                    crate::session::origin::AllowedOrigins::parse(list.iter().map(String::as_str))
                        .map_err(|e| invalid("handshake.allowed_origins", e))?,
                ),
            };
            let failure = match h.failure.as_deref() {
                None => FailureAnswer::Status,
                Some(v) => FailureAnswer::parse(v).ok_or_else(|| {
                    invalid(
                        "handshake.failure",
                        format!("{v:?} is not \"status\" (an HTTP status) or \"close\" (101, then a close code and reason)"),
                    )
                })?,
            };
            HandshakeConfig {
                allowed_origins,
                failure,
            }
        };

        let deflate = {
            let d = &self.deflate;
            let def = DeflateConfig::default();
            let service = match d.service.as_deref().map(str::trim) {
                None => def.service,
                Some(v) if v.eq_ignore_ascii_case("with-client") => ServiceDeflate::WithClient,
                Some(v) if v.eq_ignore_ascii_case("always") => ServiceDeflate::Always,
                Some(v) if v.eq_ignore_ascii_case("never") => ServiceDeflate::Never,
                Some(v) => {
                    return Err(invalid(
                        "deflate.service",
                        format!("{v:?} is not \"with-client\", \"always\" or \"never\""),
                    ))
                }
            };
            let max_window_bits = match d.max_window_bits {
                None => def.max_window_bits,
                Some(n @ 9..=15) => n,
                Some(n) => {
                    return Err(invalid(
                        "deflate.max_window_bits",
                        format!("{n} is not 9 to 15 (zlib cannot compress with 8)"),
                    ))
                }
            };
            let level = match d.level {
                None => def.level,
                Some(n @ 0..=9) => n,
                Some(n) => {
                    return Err(invalid(
                        "deflate.level",
                        format!("{n} is not 0 (store only) to 9 (smallest)"),
                    ))
                }
            };
            DeflateConfig {
                enabled: d.enabled.unwrap_or(def.enabled),
                service,
                context_takeover: d.context_takeover.unwrap_or(def.context_takeover),
                max_window_bits,
                level,
                min_message_size: d.min_message_size.map_or(def.min_message_size, |b| {
                    usize::try_from(b.as_u64()).unwrap_or(usize::MAX)
                }),
            }
        };

        let level = self.log.level.unwrap_or_else(|| "info".to_owned());
        check_log_filter(&level).map_err(|e| invalid("log.level", e))?;
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
            routing,
            handshake,
            deflate,
        })
    }
}
