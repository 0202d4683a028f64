//! The server: the listener (connection cap, accept loop, TLS and request-head timeouts), the
//! listener's TLS stream, and the request router (`/application` to admin, upgrades to
//! sessions). The accept loop does not know what a session is.

pub mod listener;
pub mod router;
pub mod tls_stream;
