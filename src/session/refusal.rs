//! A failed handshake answered the browser's way (`handshake.failure = "close"`, or route
//! metadata `apiml.routes.<name>.handshakeFailure: close`): 101, then at once a close frame
//! with a code and the reason, since a browser shows a refused handshake as close 1006 with
//! no reason and its page cannot read the HTTP status (Zowe users asked for it: api-layer
//! #3995; Zowe v2's `WebSocketProxyServerHandler` upgraded and then closed the same way).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;

use super::handshake;
use crate::close::HandshakeError;
use crate::state::Shared;

/// The close code for a failure whose HTTP status would be `e.status()`: 1013 Try Again Later
/// for 503 (no instance, limits, shutting down), 1011 for the other 5xx (the service failed
/// or timed out), 1008 Policy Violation for a refusal (4xx: no route, origin, bad path,
/// unknown instance).
pub fn close_code(e: &HandshakeError) -> CloseCode {
    match e.status().as_u16() {
        503 => CloseCode::Again,
        500..=599 => CloseCode::Error,
        _ => CloseCode::Policy,
    }
}

/// Answers `req` with 101 and spawns the task that sends the close for `e` and waits (at most
/// `limits.close_timeout`) for the client's answer; the task holds `conn_slot`. `None` when
/// `req` is not a valid upgrade request (then only an HTTP status can answer it).
pub fn answer_with_close(
    req: &mut Request<Incoming>,
    e: &HandshakeError,
    shared: &Arc<Shared>,
    conn_slot: Arc<crate::state::ConnectionSlot>,
) -> Option<Response<Full<Bytes>>> {
    if matches!(
        e,
        HandshakeError::BadRequest(_) | HandshakeError::UpgradeRequired(_)
    ) {
        return None;
    }
    let upgrade = handshake::validate_upgrade(req).ok()?;
    let resp = handshake::switching_protocols(upgrade.key.as_ref(), None, None);
    let on_upgrade = hyper::upgrade::on(req);
    let frame = crate::close::close_frame(close_code(e), &e.to_string());
    let settings = shared.settings.load_full();
    let close_timeout = settings.relay.close_timeout;
    // Only control frames are expected before the client's close answer: any data message is
    // over these limits and ends the task, so a refused client holds no message buffer
    // (however many refusals it asks for, up to `limits.max_connections`).
    let limits = crate::ws::leg::Limits {
        max_message_size: 125,
        max_frame_size: 125,
    };
    shared.tracker.spawn(async move {
        let _conn_slot = conn_slot;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut leg = crate::ws::leg::Leg::new(TokioIo::new(upgraded), Role::Server, limits);
        let _ = tokio::time::timeout(close_timeout, async {
            if leg.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            // Whatever the client sends before its close answer is dropped.
            while let Some(Ok(m)) = leg.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    });
    Some(resp)
}
