//! Diagnostics endpoints on the main listener, Spring Boot Actuator style:
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /application/websockets` | JSON array of live routed sessions |
//! | `GET /application/health` | `{"status":"UP"}` (200) or `DOWN` (503) with components |
//! | `GET /application/health/liveness` | `{"status":"UP"}` while the process serves |
//! | `GET /application/health/readiness` | as `health`: UP once a routing table is loaded, DOWN while draining |
//! | `GET /application/routes` | the current routing table |
//! | `GET /application/info` | version, start time, config path |
//!
//! Only loopback clients may use them (others get 403): they reveal client addresses.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::proxy::close::json_error;
use crate::proxy::Shared;

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The health document and whether the agent is UP (can route and is not draining).
pub fn health(shared: &Shared) -> (bool, serde_json::Value) {
    let reg = shared.registry.snapshot();
    let loaded = reg.last_success.is_some();
    let draining = shared.shutdown.is_cancelled();
    let up = loaded && !draining;
    let s = |b: bool| if b { "UP" } else { "DOWN" };
    let doc = json!({
        "status": s(up),
        "components": {
            "registry": {
                "status": s(loaded),
                "details": {
                    "source": reg.source,
                    "lastSuccess": reg.last_success.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    "lastError": reg.last_error,
                }
            },
            "listener": { "status": s(!draining) },
        }
    });
    (up, doc)
}

/// Answers a request under `/application`.
pub fn handle<B>(req: &Request<B>, shared: &Shared, peer: SocketAddr) -> Response<Full<Bytes>> {
    if !peer.ip().is_loopback() {
        return json_error(
            StatusCode::FORBIDDEN,
            "diagnostics are only served to loopback clients",
            |_| {},
        );
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
        "/application/websockets" => json_response(StatusCode::OK, &json!(shared.sessions.views())),
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
        "/application/info" => json_response(
            StatusCode::OK,
            &json!({
                "app": {"name": "wsrelay", "version": env!("CARGO_PKG_VERSION")},
                "startedAt": humantime::format_rfc3339_millis(shared.started_at).to_string(),
                "configPath": shared.config_path,
            }),
        ),
        _ => json_error(
            StatusCode::NOT_FOUND,
            "unknown diagnostics endpoint",
            |_| {},
        ),
    }
}
