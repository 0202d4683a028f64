//! Sessions: opening one (upgrade checks, route, upstream handshake, 101), running it (the
//! task, its log lines and metrics), the failover policy, and the session table.

pub mod failover;
pub mod handshake;
pub mod open;
pub mod origin;
pub mod recent;
pub mod refusal;
pub mod table;
pub mod x509;
