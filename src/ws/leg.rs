//! One leg of a session: RFC 6455 framing (§5) over an upgraded connection, holding no
//! buffer while the leg is idle (issue 7).
//!
//! A [`Leg`] is a `Stream` of received [`Message`]s and a `Sink` of messages to send, the
//! same shape as tungstenite's `WebSocketStream`, so the relay does not change. What differs
//! is memory: tungstenite keeps a zero-filled read buffer and a write buffer per connection
//! for its whole life; a `Leg` allocates its read buffer when bytes arrive and frees it as
//! soon as every complete frame in it has been taken, and frees its write buffer as soon as
//! it is written out. An idle leg holds only its connection and a few words of state.
//!
//! Protocol rules (RFC 6455):
//! - reserved bits, unknown opcodes, fragmented or oversized (> 125 bytes) control frames,
//!   a continuation without a message, a new message inside a fragmented one, and a frame
//!   masked the wrong way for the role (§5.1, §5.2, §5.4, §5.5) are `ProtocolError`s;
//! - text messages must be valid UTF-8 (§8.1); fragmented text is checked fragment by
//!   fragment, so an invalid prefix fails before the message is complete;
//! - a frame over `max_frame_size` or a message over `max_message_size` is a
//!   `CapacityError::MessageTooLong`, detected from the frame header before its payload is
//!   read;
//! - a received ping is answered with a pong carrying its payload (§5.5.2), queued at a frame
//!   boundary and written even if the relay sends nothing; while the output is backed up the
//!   latest ping's payload is kept and answered once the output drains; only the latest ping is answered
//!   while output is backed up (§5.5.3);
//! - a received close ends the stream; it is answered with the same code (1002 "Protocol
//!   violation" for a code that may not be sent, §7.4) by the next `close()` (`poll_close`),
//!   not at once: until then the leg still sends data (§5.5.1: an endpoint may send data until
//!   it sends its close), so the relay delivers what the other leg sent before its own close
//!   answer (issue 14 item 5);
//! - the end of the connection without a close frame is
//!   `ProtocolError::ResetWithoutClosingHandshake`;
//! - frames sent by the client role are masked with a fresh random key each (§5.3).
//!
//! With permessage-deflate agreed on the leg ([`Leg::with_deflate`], RFC 7692), a message whose
//! first frame has RSV1 is inflated once complete, against `max_message_size` (1009 as soon as
//! the output passes it; text is checked for UTF-8 after inflating), and data messages of at
//! least `deflate.min_message_size` bytes are sent compressed. Invalid compressed data ends
//! the stream with 1007, as a text message that is not UTF-8.
//!
//! After a read error the stream ends (`None`); the relay then closes the leg.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::deflate::{Codec, InflateError};
use super::frame::{
    self, apply_mask, Head, OP_BINARY, OP_CLOSE, OP_CONTINUE, OP_PING, OP_PONG, OP_TEXT, RSV1,
};

/// The limits of a leg (defined beside the frame header checks that apply them).
pub use super::frame::Limits;

/// The start of the error text of invalid compressed data (a 1007, as invalid UTF-8).
pub const INVALID_DEFLATE: &str = "invalid permessage-deflate data";

/// Bytes asked of the connection per read when no frame is in progress.
const READ_CHUNK: usize = 8 * 1024;
/// At most this much is reserved ahead for the rest of a large frame (bytes).
const MAX_READ_AHEAD: usize = 256 * 1024;
/// Queued output above which the sink stops accepting messages until some is written (bytes).
const WRITE_HIGH_WATER: usize = 16 * 1024;

/// A fragmented message being received.
struct Fragments {
    text: bool,
    /// Compressed (RSV1 on the first frame): inflated and checked once complete.
    compressed: bool,
    data: BytesMut,
    /// Bytes of `data` known to be valid UTF-8 (text only).
    checked: usize,
}

/// One WebSocket connection leg: a `Stream<Item = Result<Message, WsError>>` and a
/// `Sink<Message, Error = WsError>` over an upgraded byte stream `I` (see the module doc).
pub struct Leg<I> {
    io: I,
    /// `true` for the server role (the client leg): frames in are masked, frames out are not.
    server: bool,
    limits: Limits,
    /// Received bytes not yet taken as frames; no allocation while empty and idle.
    rbuf: BytesMut,
    /// The header of the frame whose payload is being received.
    head: Option<Head>,
    /// A fragmented message in progress (boxed: rare, and an idle leg holds none).
    frag: Option<Box<Fragments>>,
    /// Encoded frames not yet written, from `out_pos`; no allocation once written.
    out: Vec<u8>,
    out_pos: usize,
    /// A pong was queued by the reading side and must be written out.
    ctrl_pending: bool,
    /// A close was received and not answered yet: the answer `close()` sends (boxed: rare).
    close_due: Option<Box<Option<CloseFrame>>>,
    /// The payload of the latest ping received while the output was backed up (at least
    /// `WRITE_HIGH_WATER` bytes queued): answered as soon as the output drains (RFC 6455
    /// §5.5.2: a ping MUST be answered; §5.5.3: answering only the latest is enough). Copied
    /// (at most 125 bytes) so it pins no read chunk.
    pong_due: Option<Box<[u8]>>,
    close_sent: bool,
    /// The stream has ended (a close frame, an error or the end of the connection).
    read_done: bool,
    /// Bytes read from the connection so far (wrapping): the relay's keepalive counts a
    /// leg as heard while bytes arrive, also in the middle of a long frame (issue 14 item 2).
    bytes_read: u64,
    /// permessage-deflate, when agreed on this leg (boxed: a pointer when not).
    deflate: Option<Box<Codec>>,
}

impl<I> Leg<I> {
    /// A leg over `io`, already upgraded (the HTTP handshake is done), for `role`
    /// (`Role::Server` for the client leg, `Role::Client` for the service leg).
    pub fn new(io: I, role: Role, limits: Limits) -> Leg<I> {
        Leg {
            io,
            server: role == Role::Server,
            limits,
            rbuf: BytesMut::new(),
            head: None,
            frag: None,
            out: Vec::new(),
            out_pos: 0,
            ctrl_pending: false,
            close_due: None,
            pong_due: None,
            close_sent: false,
            read_done: false,
            bytes_read: 0,
            deflate: None,
        }
    }

    /// The leg with permessage-deflate as agreed in its handshake (`None`: not agreed).
    pub fn with_deflate(mut self, codec: Option<Codec>) -> Leg<I> {
        self.deflate = codec.map(Box::new);
        self
    }

    /// Whether permessage-deflate was agreed on this leg.
    pub fn deflate(&self) -> Option<&Codec> {
        self.deflate.as_deref()
    }

    /// Hands received compressed messages on still compressed, when `dest` (the other leg's
    /// codec) can send them as they are (see [`Codec::set_forward_compressed`]); a compressed
    /// message that reaches a leg that cannot is inflated there.
    pub fn forward_compressed_to(&mut self, dest: Option<&Codec>) {
        self.forward_compressed(dest.is_some_and(Codec::can_send_compressed));
    }

    /// As [`Leg::forward_compressed_to`], with the destination's answer given.
    pub fn forward_compressed(&mut self, dest_can_send: bool) {
        if let Some(c) = self.deflate.as_mut() {
            c.set_forward_compressed(dest_can_send);
        }
    }

    /// Heap bytes held by this leg's buffers (read buffer, partial message, unwritten
    /// output); 0 for an idle leg.
    pub fn buffered_capacity(&self) -> usize {
        self.rbuf.capacity()
            + self.frag.as_ref().map_or(0, |f| f.data.capacity())
            + self.out.capacity()
            + self.deflate.as_ref().map_or(0, |d| d.held_bytes())
    }

    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn encode_close(&mut self, frame: Option<&CloseFrame>) {
        // A close the relay sends is also the answer to one received.
        self.close_due = None;
        match frame {
            Some(f) => {
                let code = u16::from(f.code).to_be_bytes();
                self.encode(OP_CLOSE, &code, f.reason.as_bytes());
            }
            None => self.encode(OP_CLOSE, &[], &[]),
        }
        self.close_sent = true;
    }

    /// The next frame header in `rbuf`, if complete, checked against this leg's role, limits
    /// and message state ([`frame::parse_head`]).
    fn parse_head(&self) -> Result<Option<(Head, usize)>, WsError> {
        let in_message = self.frag.as_ref().map(|f| f.data.len());
        frame::parse_head(
            &self.rbuf,
            self.server,
            &self.limits,
            in_message,
            self.deflate.is_some(),
        )
    }

    /// Appends one frame (FIN set) with payload `a` followed by `b` to the output, masked
    /// in the client role ([`frame::encode`]).
    fn encode(&mut self, opcode: u8, a: &[u8], b: &[u8]) {
        frame::encode(&mut self.out, !self.server, opcode, a, b);
    }

    /// Takes complete frames from `rbuf` until one yields a message, or more bytes are
    /// needed (`Ok(None)`).
    fn take_message(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let head = match self.head {
                Some(h) => h,
                None => match self.parse_head()? {
                    Some((h, size)) => {
                        self.rbuf.advance(size);
                        self.head = Some(h);
                        h
                    }
                    None => return Ok(None),
                },
            };
            if self.rbuf.len() < head.len {
                return Ok(None);
            }
            self.head = None;
            let mut payload = self.rbuf.split_to(head.len);
            if let Some(key) = head.mask {
                apply_mask(&mut payload, key);
            }
            match head.opcode {
                OP_TEXT | OP_BINARY if head.fin => {
                    if head.rsv1 && self.forwards_compressed() {
                        return self.compressed_message(head.opcode, payload).map(Some);
                    }
                    let payload = self.inflated(payload, head.rsv1)?;
                    return data_message(head.opcode == OP_TEXT, payload).map(Some);
                }
                OP_TEXT | OP_BINARY => {
                    let mut f = Box::new(Fragments {
                        text: head.opcode == OP_TEXT,
                        compressed: head.rsv1,
                        data: payload,
                        checked: 0,
                    });
                    check_utf8_prefix(&mut f)?;
                    self.frag = Some(f);
                }
                OP_CONTINUE => {
                    let Some(f) = self.frag.as_mut() else {
                        return Err(ProtocolError::UnexpectedContinueFrame.into());
                    };
                    f.data.extend_from_slice(&payload);
                    check_utf8_prefix(f)?;
                    if head.fin {
                        if let Some(f) = self.frag.take() {
                            if f.compressed && self.forwards_compressed() {
                                let op = if f.text { OP_TEXT } else { OP_BINARY };
                                return self.compressed_message(op, f.data).map(Some);
                            }
                            let data = self.inflated(f.data, f.compressed)?;
                            return data_message(f.text, data).map(Some);
                        }
                    }
                }
                OP_PING => {
                    // Answer the latest ping now, or, while the output is backed up, once it
                    // has drained (only the latest payload is kept: memory stays bounded).
                    if !self.close_sent {
                        if self.queued() < WRITE_HIGH_WATER {
                            self.pong_due = None;
                            self.encode(OP_PONG, &payload, &[]);
                        } else {
                            self.pong_due = Some(Box::from(&payload[..]));
                        }
                        self.ctrl_pending = true;
                    }
                    return Ok(Some(Message::Ping(payload.freeze())));
                }
                OP_PONG => return Ok(Some(Message::Pong(payload.freeze()))),
                _ => return self.received_close(payload).map(Some),
            }
        }
    }

    /// A complete message's payload: inflated when `compressed` (RFC 7692 §7.2.2), against
    /// `max_message_size`.
    fn inflated(&mut self, payload: BytesMut, compressed: bool) -> Result<BytesMut, WsError> {
        if !compressed {
            return Ok(payload);
        }
        self.inflate(&payload)
            .map(|v| BytesMut::from(bytes::Bytes::from(v)))
    }

    /// Inflates one compressed message against `max_message_size` (1009 past it, 1007 for
    /// invalid data).
    fn inflate(&mut self, payload: &[u8]) -> Result<Vec<u8>, WsError> {
        let Some(codec) = self.deflate.as_mut() else {
            // parse_head refuses RSV1 without deflate; kept as a value, not a panic.
            return Err(ProtocolError::NonZeroReservedBits.into());
        };
        let max_size = self.limits.max_message_size;
        match codec.inflate(payload, max_size) {
            Ok(v) => Ok(v),
            Err(InflateError::TooBig(size)) => Err(WsError::Capacity(
                tokio_tungstenite::tungstenite::error::CapacityError::MessageTooLong {
                    size,
                    max_size,
                },
            )),
            Err(InflateError::Corrupt(cause)) => {
                Err(WsError::Utf8(format!("{INVALID_DEFLATE}: {cause}")))
            }
        }
    }

    fn forwards_compressed(&self) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|c| c.forwards_compressed())
    }

    /// A compressed message handed on as it is (`Message::Frame`, RSV1 set, whole): checked
    /// first by inflating it (size limit, UTF-8 for text), as any message is.
    fn compressed_message(&mut self, opcode: u8, payload: BytesMut) -> Result<Message, WsError> {
        let payload = payload.freeze();
        let inflated = self.inflate(&payload)?;
        if opcode == OP_TEXT {
            std::str::from_utf8(&inflated).map_err(|e| WsError::Utf8(e.to_string()))?;
        }
        drop(inflated);
        let op = if opcode == OP_TEXT {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Binary)
        };
        let mut frame = Frame::message(payload, op, true);
        frame.header_mut().rsv1 = true;
        Ok(Message::Frame(frame))
    }

    /// Sends a message another leg received compressed (`Message::Frame` with RSV1): as it is
    /// when this leg can ([`Codec::can_send_compressed`]), else inflated (it stands alone) and
    /// sent as any message.
    fn send_compressed(&mut self, frame: Frame) -> Result<(), WsError> {
        let opcode = match frame.header().opcode {
            OpCode::Data(Data::Text) => OP_TEXT,
            OpCode::Data(Data::Binary) => OP_BINARY,
            other => return Err(ProtocolError::InvalidOpcode(u8::from(other)).into()),
        };
        if !frame.header().rsv1 {
            return self.encode_data(opcode, frame.payload());
        }
        if self
            .deflate
            .as_ref()
            .is_some_and(|c| c.can_send_compressed())
        {
            self.encode(opcode | RSV1, frame.payload(), &[]);
            return Ok(());
        }
        let plain = crate::ws::deflate::inflate_alone(frame.payload())
            .map_err(|e| WsError::Io(io::Error::other(format!("{e:?}"))))?;
        self.encode_data(opcode, &plain)
    }

    /// Appends a data message, compressed when deflate was agreed and it is large enough.
    fn encode_data(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        if let Some(codec) = self.deflate.as_mut().filter(|c| c.wants(payload.len())) {
            let (out, masked) = (&mut self.out, !self.server);
            return codec
                .compress(payload, |z| {
                    frame::encode(out, masked, opcode | RSV1, z, &[])
                })
                .map_err(|e| WsError::Io(io::Error::other(e)));
        }
        self.encode(opcode, payload, &[]);
        Ok(())
    }

    /// Handles a received close frame: answers it (once) and ends the stream.
    fn received_close(&mut self, mut payload: BytesMut) -> Result<Message, WsError> {
        self.read_done = true;
        let frame = match payload.len() {
            0 => None,
            1 => return Err(ProtocolError::InvalidCloseSequence.into()),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                payload.advance(2);
                let reason = Utf8Bytes::try_from(payload.freeze())
                    .map_err(|e| WsError::Utf8(e.to_string()))?;
                Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason,
                })
            }
        };
        if self.close_sent {
            // The answer to our close: the closing handshake is over.
            return Ok(Message::Close(frame));
        }
        let frame = frame.map(|f| {
            if crate::close::sendable(f.code) {
                f
            } else {
                crate::close::Ending::Violation("Protocol violation").frame()
            }
        });
        self.close_due = Some(Box::new(frame.clone()));
        Ok(Message::Close(frame))
    }
}

impl<I: AsyncWrite + Unpin> Leg<I> {
    /// Writes queued output until none is left, then the pong that waited for it (if any);
    /// frees the output buffer then.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        loop {
            ready!(poll_write_all(
                &mut self.io,
                cx,
                &mut self.out,
                &mut self.out_pos
            ))?;
            match self.pong_due.take() {
                Some(p) if !self.close_sent => self.encode(OP_PONG, &p, &[]),
                _ => break,
            }
        }
        self.ctrl_pending = false;
        Poll::Ready(Ok(()))
    }

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        ready!(self.poll_write_out(cx))?;
        Pin::new(&mut self.io).poll_flush(cx).map_err(WsError::Io)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Stream for Leg<I> {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ctrl_pending {
                // A pong or close answer goes out even when the relay writes nothing; a
                // write error shows on the sink side.
                if let Poll::Ready(Err(_)) = this.poll_flush_all(cx) {
                    this.ctrl_pending = false;
                }
            }
            if this.read_done {
                return Poll::Ready(None);
            }
            let error = match this.take_message() {
                Ok(Some(m)) => return Poll::Ready(Some(Ok(m))),
                Ok(None) => match this.read_more(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => e,
                },
                Err(e) => e,
            };
            // The stream ends with its first error; what was buffered is dropped.
            this.read_done = true;
            this.rbuf = BytesMut::new();
            this.frag = None;
            return Poll::Ready(Some(Err(error)));
        }
    }
}

impl<I: AsyncRead + Unpin> Leg<I> {
    /// Reads more bytes: for the frame in progress (bounded), or a chunk. The end of the
    /// connection is a reset (a close frame would have ended the stream already).
    fn read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let want = match self.head {
            Some(h) => h
                .len
                .saturating_sub(self.rbuf.len())
                .clamp(READ_CHUNK, MAX_READ_AHEAD),
            None => READ_CHUNK,
        };
        Poll::Ready(
            match ready!(poll_read_lazily(&mut self.io, cx, &mut self.rbuf, want)) {
                Ok(0) => Err(ProtocolError::ResetWithoutClosingHandshake.into()),
                Ok(n) => {
                    self.bytes_read = self.bytes_read.wrapping_add(n as u64);
                    Ok(())
                }
                Err(e) => Err(WsError::Io(e)),
            },
        )
    }
}

/// A leg that tells how many bytes it has read from its connection, so liveness can be
/// judged by bytes arriving rather than by whole messages (issue 14 item 2).
pub trait ReadProgress {
    /// Bytes read from the connection since the leg was made (wrapping at `u64::MAX`).
    fn bytes_read(&self) -> u64;
}

impl<I> ReadProgress for Leg<I> {
    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Leg<I> {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        while this.queued() >= WRITE_HIGH_WATER {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        let this = &mut *self;
        if this.close_sent {
            return Err(ProtocolError::SendAfterClosing.into());
        }
        match msg {
            Message::Text(t) => this.encode_data(OP_TEXT, t.as_bytes())?,
            Message::Binary(b) => this.encode_data(OP_BINARY, &b)?,
            Message::Ping(p) => this.encode(OP_PING, &p, &[]),
            Message::Pong(p) => this.encode(OP_PONG, &p, &[]),
            Message::Close(f) => this.encode_close(f.as_ref()),
            Message::Frame(f) => this.send_compressed(f)?,
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_flush_all(cx)
    }

    /// Answers a received close (its code, or 1002), or else sends a close frame without a
    /// code, unless a close was sent already; then flushes. The connection itself closes when
    /// the leg is dropped.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if !self.close_sent {
            let answer = self.close_due.take().and_then(|f| *f);
            self.encode_close(answer.as_ref());
        }
        self.poll_flush_all(cx)
    }
}

/// A text (checked to be UTF-8, RFC 6455 §8.1) or binary message with `payload`.
fn data_message(text: bool, payload: BytesMut) -> Result<Message, WsError> {
    if text {
        Utf8Bytes::try_from(payload.freeze())
            .map(Message::Text)
            .map_err(|e| WsError::Utf8(e.to_string()))
    } else {
        Ok(Message::Binary(payload.freeze()))
    }
}

/// Writes `out[*pos..]` to `io` until all of it is written, then frees `out`, so a connection
/// holds no output buffer while idle (issue 7). `WriteZero` if `io` takes nothing.
pub(crate) fn poll_write_all<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    cx: &mut Context<'_>,
    out: &mut Vec<u8>,
    pos: &mut usize,
) -> Poll<io::Result<()>> {
    while *pos < out.len() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, &out[*pos..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *pos += n;
    }
    *out = Vec::new();
    *pos = 0;
    Poll::Ready(Ok(()))
}

/// Reads from `io` into `buf` after making room for `want` bytes; when the read has to wait
/// and `buf` holds nothing, frees `buf`, so a connection holds no read buffer while idle
/// (issue 7). `Ok(0)` is the end of the stream.
pub(crate) fn poll_read_lazily<IO: AsyncRead + Unpin>(
    io: &mut IO,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    want: usize,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < want {
        buf.reserve(want);
    }
    let r = tokio_util::io::poll_read_buf(Pin::new(io), cx, buf);
    if r.is_pending() && buf.is_empty() {
        *buf = BytesMut::new();
    }
    r
}

/// Checks the not yet checked part of a fragmented text message; an incomplete sequence at
/// the end may still be completed by the next fragment (RFC 6455 §8.1: fail fast).
fn check_utf8_prefix(f: &mut Fragments) -> Result<(), WsError> {
    if !f.text || f.compressed {
        return Ok(());
    }
    match std::str::from_utf8(&f.data[f.checked..]) {
        Ok(_) => f.checked = f.data.len(),
        Err(e) if e.error_len().is_none() => f.checked += e.valid_up_to(),
        Err(e) => return Err(WsError::Utf8(e.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
