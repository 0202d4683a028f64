//! RFC 6455 framing: a connection leg that reads and writes WebSocket frames itself.

pub mod frame;
pub mod leg;
