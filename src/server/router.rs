//! The request router of a client connection: `/application` requests go to admin, every
//! other request is a WebSocket upgrade for a session (refusals counted and logged here).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::session::handshake::ClientSide;
use crate::state::Shared;

/// Handles one HTTP request on a client connection: admin endpoints or a WebSocket upgrade.
pub async fn handle_request(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    client: ClientSide,
    slot: Arc<crate::state::ConnectionSlot>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path();
    if path == "/application" || path.starts_with("/application/") {
        return Ok(crate::admin::handle(&req, &shared, client.peer));
    }
    let gateway_path = path.to_owned();
    let mut req = req;
    // HTTP/2 has `:authority` instead of Host; the service leg is HTTP/1.1, which needs Host
    // (RFC 9113 §8.3.1), and Host is what the handshake checks and forwards.
    if req.version() == http::Version::HTTP_2 && !req.headers().contains_key(http::header::HOST) {
        if let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    match crate::session::open::open_session(&mut req, &shared, &client, Arc::clone(&slot)).await {
        Ok(resp) => Ok(resp),
        Err(crate::session::open::Refusal { error: e, answer }) => {
            let status = e.status().as_u16();
            shared
                .metrics
                .proxy
                .handshake_failures
                .get_or_create(&crate::metrics::StatusLabel {
                    status: status.to_string(),
                })
                .inc();
            if status >= 500 {
                tracing::warn!(client = %client.peer, path = %gateway_path, status, cause = %e, "handshake failed");
            } else {
                tracing::info!(client = %client.peer, path = %gateway_path, status, cause = %e, "handshake refused");
            }
            shared
                .refused_upgrades
                .push(crate::session::recent::RefusedUpgrade {
                    at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                    client_address: crate::session::table::java_socket_address(client.peer),
                    path: crate::session::recent::cut(&gateway_path),
                    status,
                    cause: crate::session::recent::cut(&e.to_string()),
                });
            if answer == crate::config::FailureAnswer::Close {
                if let Some(resp) =
                    crate::session::refusal::answer_with_close(&mut req, &e, &shared, slot)
                {
                    return Ok(resp);
                }
            }
            Ok(e.to_response())
        }
    }
}

/// A client's address as seen by the proxy.
pub fn client_side(peer: SocketAddr, tls: bool, local_port: u16) -> ClientSide {
    ClientSide {
        peer,
        tls,
        local_port,
        cert: None,
        http2: false,
    }
}
