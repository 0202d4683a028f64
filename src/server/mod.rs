//! The server: the listener (connection cap, accept loop, TLS and request-head timeouts) and
//! the request router (`/application` to admin, upgrades to sessions). The accept loop does
//! not know what a session is. The listener's TLS stream is [`crate::tls::stream`].

pub mod listener;
pub mod router;
