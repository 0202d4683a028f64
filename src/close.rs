//! Failures at the edge, in one table: handshake failures → HTTP status + JSON body, and
//! relay endings → RFC 6455 close code + reason.
//!
//! The reference gateway can only close the client socket when routing fails; wsrelay connects
//! to the service before it answers the client, so a failure is an honest HTTP status with a
//! small JSON body `{"status":502,"error":"Bad Gateway","message":"..."}`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::routing::LookupError;

/// Why an upgrade request was not relayed. Each variant maps to exactly one HTTP status
/// ([`HandshakeError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Malformed upgrade request (RFC 6455 §4.2.1): 400.
    #[error("{0}")]
    BadRequest(String),
    /// Not a WebSocket upgrade at all, or an unsupported `Sec-WebSocket-Version`: 426 with
    /// `Upgrade: websocket` and `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2, §4.4).
    #[error("{0}")]
    UpgradeRequired(String),
    /// Path rejected (traversal, encoded separators): 400.
    #[error("path rejected: {0}")]
    BadPath(&'static str),
    /// The browser `Origin` is not on the allow-list (`handshake.allowed_origins`, route
    /// metadata `apiml.routes.<name>.allowedOrigins`): 403, before any upstream connect.
    #[error("{0}")]
    ForbiddenOrigin(String),
    /// No service/route matches: 404.
    #[error("no WebSocket route for this path")]
    NoRoute,
    /// The service is known but has no UP instance: 503.
    #[error("service {0} has no UP instance")]
    NoInstance(String),
    /// `X-InstanceId` names no instance of the service: 404 (as Zowe v3's
    /// `DeterministicLoadBalancer`: "Service instance not found for the provided instance ID").
    #[error("service {service} has no instance {instance:?} (X-InstanceId)")]
    UnknownInstance {
        /// Service id.
        service: String,
        /// The requested instance id.
        instance: String,
    },
    /// `X-InstanceId` names an instance that is not UP: 503.
    #[error("instance {instance:?} of service {service} is {status}, not UP (X-InstanceId)")]
    InstanceNotUp {
        /// Service id.
        service: String,
        /// The requested instance id.
        instance: String,
        /// Its Eureka status.
        status: &'static str,
    },
    /// The upstream refused the connection, failed TLS, or broke the handshake: 502.
    #[error("{0}")]
    BadGateway(String),
    /// The upstream answered the upgrade with a non-101 status: 502, status in the message.
    #[error("service {service} ({url}) answered the upgrade with HTTP {status}")]
    UpstreamStatus {
        /// Service id.
        service: String,
        /// The instance's URL (scheme, host, port), e.g. `ws://10.0.0.5:10012`.
        url: String,
        /// The upstream's HTTP status code.
        status: u16,
    },
    /// Connecting to (or handshaking with) the upstream timed out: 504.
    #[error("{0}")]
    GatewayTimeout(String),
    /// The agent is shutting down: 503.
    #[error("shutting down")]
    ShuttingDown,
    /// `limits.max_sessions` or `limits.max_sessions_per_ip` reached: 503 with
    /// `Retry-After: 5`.
    #[error("{0}")]
    TooManySessions(String),
}

impl From<LookupError> for HandshakeError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::BadPath(p) => HandshakeError::BadPath(p),
            LookupError::NoRoute => HandshakeError::NoRoute,
        }
    }
}

impl HandshakeError {
    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::BadRequest(_) | HandshakeError::BadPath(_) => StatusCode::BAD_REQUEST,
            HandshakeError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::ForbiddenOrigin(_) => StatusCode::FORBIDDEN,
            HandshakeError::NoRoute | HandshakeError::UnknownInstance { .. } => {
                StatusCode::NOT_FOUND
            }
            HandshakeError::NoInstance(_)
            | HandshakeError::InstanceNotUp { .. }
            | HandshakeError::ShuttingDown
            | HandshakeError::TooManySessions(_) => StatusCode::SERVICE_UNAVAILABLE,
            HandshakeError::BadGateway(_) | HandshakeError::UpstreamStatus { .. } => {
                StatusCode::BAD_GATEWAY
            }
            HandshakeError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The HTTP response: status, `Content-Type: application/json`, and
    /// `{"status":N,"error":"Reason Phrase","message":"..."}`.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let status = self.status();
        let too_many = matches!(self, HandshakeError::TooManySessions(_));
        json_error(status, &self.to_string(), |h| {
            if too_many {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            if status == StatusCode::UPGRADE_REQUIRED {
                h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(
                    http::header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
        })
    }
}

/// A JSON error response in the Spring Boot shape `{"status":..,"error":..,"message":..}`.
pub fn json_error(
    status: StatusCode,
    message: &str,
    extra: impl FnOnce(&mut http::HeaderMap),
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message,
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    extra(h);
    resp
}

/// Close reasons are at most 123 bytes (RFC 6455 §5.5: control payload ≤ 125, minus the code).
pub const MAX_REASON_BYTES: usize = 123;

/// Cuts `reason` to at most 123 bytes on a UTF-8 character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while end > 0 && !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or("")
}

/// A close frame with `code` and `reason` (cut to 123 bytes).
pub fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate_reason(reason)),
    }
}

/// Every way the gateway itself ends a leg, and the close code and reason that leg gets: the
/// one table of relay endings. Codes a peer chose (a forwarded close) are not here: they pass
/// through as sent. 1005, 1006 and 1015 are never sent (RFC 6455 §7.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending<'a> {
    /// The agent shuts down: 1001 "gateway shutting down" to both legs.
    Shutdown,
    /// No data message either way for `limits.idle_timeout`: 1000 "idle timeout" to both.
    Idle,
    /// The service leg ended without a close frame: the client gets 1011 "service connection
    /// lost".
    ServiceLost,
    /// The client leg ended without a close frame: the service gets 1001 "client connection
    /// lost".
    ClientLost,
    /// The named side (`"client"` or `"service"`) does not read within `limits.write_timeout`:
    /// the other leg gets 1011 "… is not reading".
    NotReading(&'a str),
    /// A message over `limits.max_message_size`: the sender gets 1009 with the cause (§7.4.1).
    TooBig(&'a str),
    /// The other leg of a [`Ending::TooBig`]: 1009 "… sent a message over the size limit".
    PeerTooBig(&'a str),
    /// Invalid UTF-8 in a text message or close reason: the sender gets 1007 with the cause.
    InvalidUtf8(&'a str),
    /// Any other protocol violation: the sender gets 1002 with the cause.
    Violation(&'a str),
    /// The other leg of an [`Ending::InvalidUtf8`] or [`Ending::Violation`]: 1011 "… protocol
    /// error".
    PeerViolation(&'a str),
    /// Failover found no live instance: the client gets 1013 Try Again Later.
    NoInstanceLeft(&'a str),
    /// Failover could not move the session (no instance accepted, the deadline passed, the
    /// buffer was full): the client gets 1011 with the cause.
    FailoverFailed(&'a str),
}

impl Ending<'_> {
    /// The close code this ending sends.
    pub fn code(&self) -> CloseCode {
        match self {
            Ending::Shutdown | Ending::ClientLost => CloseCode::Away,
            Ending::Idle => CloseCode::Normal,
            Ending::ServiceLost
            | Ending::NotReading(_)
            | Ending::PeerViolation(_)
            | Ending::FailoverFailed(_) => CloseCode::Error,
            Ending::TooBig(_) | Ending::PeerTooBig(_) => CloseCode::Size,
            Ending::InvalidUtf8(_) => CloseCode::Invalid,
            Ending::Violation(_) => CloseCode::Protocol,
            Ending::NoInstanceLeft(_) => CloseCode::Again,
        }
    }

    /// The close reason this ending sends (cut to 123 bytes by [`Ending::frame`]).
    pub fn reason(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Ending::Shutdown => Cow::Borrowed("gateway shutting down"),
            Ending::Idle => Cow::Borrowed("idle timeout"),
            Ending::ServiceLost => Cow::Borrowed("service connection lost"),
            Ending::ClientLost => Cow::Borrowed("client connection lost"),
            Ending::NotReading(side) => Cow::Owned(format!("{side} is not reading")),
            Ending::PeerTooBig(side) => {
                Cow::Owned(format!("{side} sent a message over the size limit"))
            }
            Ending::PeerViolation(side) => Cow::Owned(format!("{side} protocol error")),
            Ending::TooBig(cause)
            | Ending::InvalidUtf8(cause)
            | Ending::Violation(cause)
            | Ending::NoInstanceLeft(cause)
            | Ending::FailoverFailed(cause) => Cow::Borrowed(cause),
        }
    }

    /// The close frame: [`Ending::code`] and [`Ending::reason`].
    pub fn frame(&self) -> CloseFrame {
        close_frame(self.code(), &self.reason())
    }
}

/// The ending for a violation whose close code the frame reader chose (1009, 1007 or 1002),
/// with its cause.
pub fn violation(code: CloseCode, cause: &str) -> Ending<'_> {
    match code {
        CloseCode::Size => Ending::TooBig(cause),
        CloseCode::Invalid => Ending::InvalidUtf8(cause),
        _ => Ending::Violation(cause),
    }
}

/// Whether a code may be sent on the wire: 1005, 1006 and 1015 are reserved for reporting
/// (RFC 6455 §7.4.1) and never sent.
pub fn sendable(code: CloseCode) -> bool {
    let n = u16::from(code);
    !matches!(n, 1005 | 1006 | 1015) && code.is_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_one_status() {
        assert_eq!(HandshakeError::BadRequest("x".into()).status(), 400);
        assert_eq!(HandshakeError::BadPath("x").status(), 400);
        assert_eq!(HandshakeError::NoRoute.status(), 404);
        assert_eq!(HandshakeError::NoInstance("S".into()).status(), 503);
        assert_eq!(HandshakeError::BadGateway("x".into()).status(), 502);
        assert_eq!(
            HandshakeError::UpstreamStatus {
                service: "S".into(),
                url: "ws://h:1".into(),
                status: 403
            }
            .status(),
            502
        );
        assert_eq!(HandshakeError::GatewayTimeout("x".into()).status(), 504);
        let r = HandshakeError::UpgradeRequired("x".into()).to_response();
        assert_eq!(r.status(), 426);
        assert_eq!(r.headers()["sec-websocket-version"], "13");
    }

    #[test]
    fn reasons_are_cut_on_a_char_boundary() {
        let s = "é".repeat(100); // 200 bytes
        let t = truncate_reason(&s);
        assert!(t.len() <= 123 && t.len() >= 122);
        assert!(s.starts_with(t));
        assert_eq!(truncate_reason("short"), "short");
    }

    #[test]
    fn reserved_codes_are_not_sendable() {
        assert!(!sendable(CloseCode::Status));
        assert!(!sendable(CloseCode::Abnormal));
        assert!(!sendable(CloseCode::Tls));
        assert!(sendable(CloseCode::Normal));
        assert!(sendable(CloseCode::from(4000)));
    }
}
