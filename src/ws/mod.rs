//! RFC 6455 framing: a connection leg that reads and writes WebSocket frames itself, with
//! RFC 7692's permessage-deflate.

pub mod deflate;
pub mod frame;
pub mod leg;
