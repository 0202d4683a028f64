//! HTTP access to the Eureka servers with Netflix's failover rules
//! (`RetryableEurekaHttpClient`): server order by zone, quarantine, credentials and client
//! certificates, and bodies read under `registry.max_payload_size`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;

use anyhow::Context as _;
use http::{header, Method};

use super::super::body::{BodyError, Collector};
use crate::config::{EurekaOptions, RegistryConfig};

/// Servers tried per request (Eureka's `RetryableEurekaHttpClient` default of 3).
pub const MAX_ATTEMPTS: usize = 3;

/// Fraction (in percent) of quarantined servers at which the quarantine is cleared (Eureka's
/// `retryableClientQuarantineRefreshPercentage`, 0.66).
pub(crate) const QUARANTINE_REFRESH_PERCENT: usize = 66;

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
        source: crate::registry::DecodeError,
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
pub(crate) fn credentials(url: &str) -> (String, Option<(String, String)>) {
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
    rng: &mut impl rand::Rng,
) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let (mut near, mut far): (Vec<usize>, Vec<usize>) = (0..zones.len())
        .partition(|&i| my_zone.is_some_and(|z| zones.get(i).is_some_and(|s| s == z)));
    near.shuffle(rng);
    far.shuffle(rng);
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
pub(crate) struct Server {
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
pub(crate) fn eureka_tls(
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
        let order = server_order(&zones, cfg.eureka.zone.as_deref(), &mut rand::rng());
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
