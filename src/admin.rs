//! Diagnostics endpoints on the main listener, Spring Boot Actuator style:
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /application/websockets` | JSON array of live routed sessions |
//! | `GET /application/websockets/closed` | the last `admin.recent` sessions that ended, newest first |
//! | `GET /application/websockets/refused` | the last `admin.recent` refused upgrades, newest first |
//! | `GET /application/health` | `{"status":"UP"}` (200) or `DOWN` (503) with components `registry`, `tls`, `listener` |
//! | `GET /application/health/liveness` | `{"status":"UP"}` while the process serves requests |
//! | `GET /application/health/readiness` | as `health`: UP once a routing table is loaded, DOWN (503) while draining |
//! | `GET /application/routes` | the current routing table |
//! | `GET /application` | the endpoints with links (Actuator's discovery page: `_links`) |
//! | `GET /application/prometheus` | Prometheus metrics: text format 0.0.4, or OpenMetrics when `Accept` asks for it |
//! | `GET /application/info` | version, build, start time, config path |
//!
//! Access: only clients in `admin.allow` (default: loopback) get an answer, others get 403;
//! with `admin.token` set, requests also need `Authorization: Bearer <token>` (401 otherwise).
//! These endpoints reveal client addresses and service topology.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::close::json_error;
use crate::state::Shared;

/// Certificates closer than this to `notAfter` make the `tls` component report a warning.
pub const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The health document and whether the agent is UP (has loaded a routing table and is not
/// draining).
pub fn health(shared: &Shared) -> (bool, serde_json::Value) {
    let reg = shared.registry.snapshot();
    let loaded = reg.last_success.is_some();
    let draining = shared.shutdown.is_cancelled();
    let up = loaded && !draining;
    let s = |b: bool| if b { "UP" } else { "DOWN" };
    let tls = match &shared.cert {
        None => json!({"status": "UP", "details": {"enabled": false}}),
        Some(store) => {
            let current = store.current();
            let expiry = current
                .end_entity_cert()
                .ok()
                .and_then(crate::tls::not_after_unix);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let remaining = expiry.map(|e| e - now);
            let warn = remaining.is_some_and(|r| r < CERT_EXPIRY_WARNING.as_secs() as i64);
            json!({
                "status": "UP",
                "details": {
                    "enabled": true,
                    "notAfter": expiry
                        .and_then(|e| u64::try_from(e).ok())
                        .map(|e| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(e))),
                    "expiresSoon": warn,
                }
            })
        }
    };
    let doc = json!({
        "status": s(up),
        "components": {
            "registry": {
                "status": s(loaded),
                "details": {
                    "source": reg.source,
                    "lastSuccess": reg.last_success.map(rfc3339),
                    "lastError": reg.last_error,
                    "fromCache": reg.from_cache,
                }
            },
            "tls": tls,
            "listener": {
                "status": s(!draining),
                "details": {"draining": draining, "sessions": shared.sessions.len()}
            },
        }
    });
    (up, doc)
}

/// Whether `peer` may use the endpoints, and the refusal if not.
#[allow(clippy::result_large_err)] // the refusal is the response itself, built once
fn check_access<B>(
    req: &Request<B>,
    shared: &Shared,
    peer: SocketAddr,
) -> Result<(), Response<Full<Bytes>>> {
    let settings = shared.settings.load();
    if !settings.admin.allows(peer.ip()) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "diagnostics are not served to this client address (see admin.allow)",
            |_| {},
        ));
    }
    if let Some(token) = &settings.admin.token {
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.expose().as_bytes())) {
            return Err(json_error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
                |h| {
                    h.insert(
                        http::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer"),
                    );
                },
            ));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The endpoints under `/application`.
const ENDPOINTS: [&str; 9] = [
    "health",
    "health/liveness",
    "health/readiness",
    "info",
    "prometheus",
    "routes",
    "websockets",
    "websockets/closed",
    "websockets/refused",
];

/// Actuator's discovery page: `{"_links":{"self":{"href":..,"templated":false},"health":..}}`,
/// links made from the request's `Host` (or the listener's address seen by the client).
fn discovery<B>(req: &Request<B>, shared: &Shared, peer: SocketAddr) -> serde_json::Value {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '"', ' ']))
        .map_or_else(|| peer.to_string(), str::to_owned);
    let scheme = if shared.cert.is_some() {
        "https"
    } else {
        "http"
    };
    let href = |p: &str| json!({"href": format!("{scheme}://{host}{p}"), "templated": false});
    let mut links = serde_json::Map::new();
    links.insert("self".into(), href("/application"));
    for e in ENDPOINTS {
        links.insert(e.replace('/', "-"), href(&format!("/application/{e}")));
    }
    json!({ "_links": links })
}

/// Answers a request under `/application`.
pub fn handle<B>(req: &Request<B>, shared: &Shared, peer: SocketAddr) -> Response<Full<Bytes>> {
    if let Err(refusal) = check_access(req, shared, peer) {
        return refusal;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is supported",
            |h| {
                h.insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            },
        );
    }
    match req.uri().path().trim_end_matches('/') {
        "/application" => json_response(StatusCode::OK, &discovery(req, shared, peer)),
        "/application/websockets" => json_response(StatusCode::OK, &json!(shared.sessions.views())),
        "/application/websockets/closed" => json_response(
            StatusCode::OK,
            &json!(shared.closed_sessions.newest_first()),
        ),
        "/application/websockets/refused" => json_response(
            StatusCode::OK,
            &json!(shared.refused_upgrades.newest_first()),
        ),
        "/application/health" | "/application/health/readiness" => {
            let (up, doc) = health(shared);
            json_response(
                if up {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &doc,
            )
        }
        "/application/health/liveness" => json_response(StatusCode::OK, &json!({"status": "UP"})),
        "/application/routes" => {
            let table = shared.routes.load();
            json_response(
                StatusCode::OK,
                &json!(table.services().iter().map(|s| &***s).collect::<Vec<_>>()),
            )
        }
        "/application/prometheus" => {
            shared.sessions.sync_metrics(&shared.metrics.proxy);
            if let Some(store) = &shared.cert {
                if let Some(exp) = store
                    .current()
                    .end_entity_cert()
                    .ok()
                    .and_then(crate::tls::not_after_unix)
                {
                    shared.metrics.tls.cert_expiry.set(exp);
                }
            }
            // OpenMetrics only when asked for (Prometheus asks); the classic text format
            // otherwise, which a browser shows instead of downloading.
            let openmetrics = req
                .headers()
                .get_all(http::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(crate::metrics::wants_openmetrics);
            let text = shared.metrics.encode();
            let (body, content_type) = if openmetrics {
                (text, crate::metrics::CONTENT_TYPE)
            } else {
                (
                    crate::metrics::to_text_004(&text),
                    crate::metrics::CONTENT_TYPE_004,
                )
            };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            );
            r
        }
        "/application/info" => json_response(
            StatusCode::OK,
            &json!({
                "app": {"name": "wsrelay", "version": env!("CARGO_PKG_VERSION"), "commit": crate::metrics::COMMIT},
                "build": {
                    "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
                    "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
                },
                "startedAt": rfc3339(shared.started_at),
                "configPath": shared.config_path,
                "upstream": {"insecureSkipVerify": shared.settings.load().insecure_skip_verify},
            }),
        ),
        _ => json_error(
            StatusCode::NOT_FOUND,
            "unknown diagnostics endpoint",
            |_| {},
        ),
    }
}
