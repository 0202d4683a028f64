//! Eureka HTTP source: full registry fetch (`GET {serviceUrl}apps/`) with server failover.
//!
//! Behaves like Netflix's `DiscoveryClient` for the full fetch: asks for `application/json`
//! or `application/xml` per `registry.format` (Eureka answers XML unless asked for JSON),
//! accepts gzip, applies connect/read timeouts, and on failure tries the next configured
//! server. When every server fails, the last good routing table keeps serving and the outage
//! is logged once, not once per poll. Credentials in a service URL
//! (`https://user:pass@host/eureka/`) are sent as HTTP basic auth and never logged.

use http::header;

use super::{decode, Publisher, Snapshot};
use crate::config::{RegistryConfig, WireFormat};

/// Why a fetch from one Eureka server failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connect, timeout, TLS or protocol failure.
    #[error("{server}: {message}")]
    Transport {
        /// The server URL with credentials removed.
        server: String,
        /// The cause.
        message: String,
    },
    /// The server answered with a non-200 status.
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

/// A Eureka client for full fetches over a list of servers.
pub struct EurekaClient {
    http: reqwest::Client,
    servers: Vec<String>,
    format: WireFormat,
    max_payload: usize,
    /// Index of the server that answered last (tried first next time).
    current: std::sync::atomic::AtomicUsize,
}

impl EurekaClient {
    /// Builds a client for `servers` (each ending with `/`).
    ///
    /// # Errors
    /// If the HTTP client cannot be built (TLS roots unavailable).
    pub fn new(
        servers: Vec<String>,
        cfg: &RegistryConfig,
        tls: rustls::ClientConfig,
    ) -> anyhow::Result<EurekaClient> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.connect_timeout + cfg.read_timeout)
            .gzip(true)
            .user_agent(concat!("wsrelay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(EurekaClient {
            http,
            servers,
            format: cfg.format,
            max_payload: cfg.max_payload_size,
            current: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Fetches the full registry (`GET apps/`) from one server.
    ///
    /// # Errors
    /// [`FetchError`] with the redacted server URL.
    pub async fn fetch_from(&self, server: &str) -> Result<Snapshot, FetchError> {
        let shown = redact(server);
        let (clean, creds) = credentials(server);
        let accept = match self.format {
            WireFormat::Json => "application/json",
            WireFormat::Xml => "application/xml",
        };
        let mut req = self
            .http
            .get(format!("{clean}apps/"))
            .header(header::ACCEPT, accept);
        if let Some((u, p)) = creds {
            req = req.basic_auth(u, Some(p));
        }
        let transport = |e: reqwest::Error| FetchError::Transport {
            server: shown.clone(),
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
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                server: shown,
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_payload {
                return Err(FetchError::TooLarge {
                    server: shown,
                    max: self.max_payload,
                });
            }
            body.extend_from_slice(&chunk);
        }
        decode(&body).map_err(|source| FetchError::Decode {
            server: shown,
            source,
        })
    }

    /// Fetches from the server that worked last, then the others in order.
    ///
    /// # Errors
    /// The error of every server, joined, when all fail.
    pub async fn fetch(&self) -> Result<(Snapshot, String), String> {
        use std::sync::atomic::Ordering;
        let n = self.servers.len();
        let start = self.current.load(Ordering::Relaxed) % n.max(1);
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let Some(server) = self.servers.get(idx) else {
                continue;
            };
            match self.fetch_from(server).await {
                Ok(s) => {
                    if idx != start {
                        tracing::info!(server = %redact(server), "switched Eureka server");
                    }
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((s, redact(server)));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Eureka fetch failed; trying the next server");
                    errors.push(e.to_string());
                }
            }
        }
        Err(format!("every Eureka server failed: {}", errors.join("; ")))
    }

    /// Fetches once and publishes; on failure records it (last good table kept).
    /// Returns true on success.
    pub async fn refresh(&self, publisher: &Publisher) -> bool {
        match self.fetch().await {
            Ok((snapshot, source)) => {
                publisher
                    .metrics
                    .fetches
                    .get_or_create(&crate::metrics::OutcomeLabel { outcome: "full" })
                    .inc();
                publisher.publish(&snapshot, &source);
                true
            }
            Err(e) => {
                publisher.fail(e);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
