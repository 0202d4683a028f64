//! permessage-deflate (RFC 7692), negotiated on each leg on its own (issue 17).
//!
//! - [`accept_offer`]: the server role (the client leg). The first valid offer is accepted;
//!   wsrelay asks for `server_no_context_takeover` and `client_no_context_takeover` unless
//!   `deflate.context_takeover = true` (RFC 7692 §7.1.1: a server may add both to any answer).
//! - [`offer`] and [`accept_response`]: the client role (the service leg).
//! - [`Codec`]: one leg's compression. Without context takeover a message is compressed and
//!   inflated with a per-thread context that is reset after it, so an idle leg holds no
//!   zlib state at all; with context takeover the leg keeps its own (see the README for the
//!   cost).
//!
//! Inflating always uses a 2^15-byte window, which reads any smaller window (§7.1.2). A
//! compressor limited to 8 window bits (which zlib cannot honour) writes stored blocks, which
//! refer to no window at all. Received compressed messages are inflated against
//! `limits.max_message_size`: inflating stops as soon as the output passes it (1009).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::header::{self, HeaderMap, HeaderValue};

use crate::config::{DeflateConfig, ServiceDeflate};

/// The extension token (RFC 7692 §7).
pub const NAME: &str = "permessage-deflate";
/// The empty stored block a sync flush ends with, removed by the sender and added back by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// The window of every inflater: the largest, which reads any smaller one.
const INFLATE_BITS: u8 = 15;
/// A per-thread buffer larger than this is freed after use (bytes).
const SCRATCH_KEEP: usize = 256 * 1024;

/// The parameters of one offer or response element (RFC 7692 §7.1). Window bits are 8..=15.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    /// `server_no_context_takeover` (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits` (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (§7.1.2.2); `Some(None)` is the parameter without a value
    /// (an offer only).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// What one leg agreed, from wsrelay's side of that leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The window wsrelay's compressor may use on this leg, 8..=15 bits (8: stored blocks).
    pub send_bits: u8,
    /// wsrelay's compressor starts each message afresh (no context takeover when sending).
    pub send_reset: bool,
    /// The peer starts each message afresh, so the inflater can be reset after each.
    pub recv_reset: bool,
}

/// Splits `s` at `sep` outside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

/// The window bits value `8`..`15` (a token or a quoted string, RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Result<u8, String> {
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    match v.parse::<u8>() {
        Ok(n @ 8..=15) if !v.starts_with('0') => Ok(n),
        _ => Err(format!("window bits {v:?} is not 8 to 15")),
    }
}

/// Parses the parameters after the extension name.
///
/// # Errors
/// A duplicate or unknown parameter, a missing or bad value, or a value where none belongs
/// (§7.1: such an element is declined by a server and fails the connection at a client).
pub fn parse_params<'a>(params: impl Iterator<Item = &'a str>) -> Result<Params, String> {
    let mut p = Params::default();
    let mut seen = [false; 4];
    for raw in params {
        let raw = raw.trim();
        let (name, value) = match raw.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (raw, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            other => return Err(format!("unknown parameter {other:?}")),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(format!("{name} given twice"));
        }
        match (slot, value) {
            (0, None) => p.server_no_context_takeover = true,
            (1, None) => p.client_no_context_takeover = true,
            (0 | 1, Some(_)) => return Err(format!("{name} takes no value")),
            (2, Some(v)) => p.server_max_window_bits = Some(window_bits(v)?),
            (2, None) => return Err("server_max_window_bits needs a value".into()),
            (_, v) => p.client_max_window_bits = Some(v.map(window_bits).transpose()?),
        }
    }
    Ok(p)
}

/// The `permessage-deflate` elements of `Sec-WebSocket-Extensions` headers, in order, each
/// parsed (or its error); other extensions are skipped.
fn deflate_elements(headers: &HeaderMap) -> Vec<Result<Params, String>> {
    let mut out = Vec::new();
    for v in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
        let Ok(v) = v.to_str() else { continue };
        for element in split_outside_quotes(v, ',') {
            let mut parts = split_outside_quotes(element, ';');
            let name = parts.next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case(NAME) {
                out.push(parse_params(parts));
            }
        }
    }
    out
}

/// The server role (the client leg): accepts the first valid `permessage-deflate` offer in
/// the request's `Sec-WebSocket-Extensions`, returning what was agreed and the response
/// header value; `None` when `deflate.enabled` is false or nothing valid was offered.
pub fn accept_offer(headers: &HeaderMap, cfg: &DeflateConfig) -> Option<(Agreed, HeaderValue)> {
    if !cfg.enabled {
        return None;
    }
    let offer = deflate_elements(headers).into_iter().find_map(Result::ok)?;
    let send_reset = offer.server_no_context_takeover || !cfg.context_takeover;
    let recv_reset = offer.client_no_context_takeover || !cfg.context_takeover;
    let mut answer = String::from(NAME);
    if send_reset {
        answer.push_str("; server_no_context_takeover");
    }
    if recv_reset {
        answer.push_str("; client_no_context_takeover");
    }
    // §7.1.2.1: an offered server_max_window_bits is accepted by answering it, with the same
    // or a smaller value.
    let send_bits = match offer.server_max_window_bits {
        Some(n) => {
            let n = n.min(cfg.max_window_bits);
            answer.push_str(&format!("; server_max_window_bits={n}"));
            n
        }
        None => cfg.max_window_bits,
    };
    let value = HeaderValue::from_str(&answer).ok()?;
    Some((
        Agreed {
            send_bits,
            send_reset,
            recv_reset,
        },
        value,
    ))
}

/// Whether to offer permessage-deflate to the service (`deflate.service`): `"always"`,
/// `"never"`, or (`"with-client"`) when the client leg agreed to it.
pub fn offers_service(cfg: &DeflateConfig, client_agreed: bool) -> bool {
    match cfg.service {
        ServiceDeflate::Never => false,
        ServiceDeflate::WithClient => client_agreed,
        ServiceDeflate::Always => true,
    }
}

/// The client role (the service leg): the `Sec-WebSocket-Extensions` value offered to the
/// service. Two elements when contexts are not taken over: the first asks for
/// `server_no_context_takeover`, the second, for a service that declines that, does not.
pub fn offer(cfg: &DeflateConfig) -> HeaderValue {
    HeaderValue::from_static(if cfg.context_takeover {
        "permessage-deflate; client_max_window_bits"
    } else {
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits, permessage-deflate; client_no_context_takeover; client_max_window_bits"
    })
}

/// The client role: checks the service's `Sec-WebSocket-Extensions` answer to [`offer`].
///
/// # Errors
/// More than one extension, one other than `permessage-deflate`, or bad parameters (RFC 6455
/// §4.1 client rule 6, RFC 7692 §7.1: the connection fails).
pub fn accept_response(value: &HeaderValue, cfg: &DeflateConfig) -> Result<Agreed, String> {
    let v = value
        .to_str()
        .map_err(|_| "the extension answer is not visible ASCII".to_owned())?;
    let elements: Vec<&str> = split_outside_quotes(v, ',').collect();
    let [element] = elements.as_slice() else {
        return Err(format!("{v:?} selects more than one extension"));
    };
    let mut parts = split_outside_quotes(element, ';');
    let name = parts.next().unwrap_or("").trim();
    if !name.eq_ignore_ascii_case(NAME) {
        return Err(format!("{v:?} selects an extension that was not offered"));
    }
    let p = parse_params(parts).map_err(|e| format!("{v:?}: {e}"))?;
    let send_bits = match p.client_max_window_bits {
        Some(Some(n)) => n.min(cfg.max_window_bits),
        Some(None) => return Err(format!("{v:?}: client_max_window_bits needs a value")),
        None => cfg.max_window_bits,
    };
    Ok(Agreed {
        send_bits,
        send_reset: p.client_no_context_takeover || !cfg.context_takeover,
        recv_reset: p.server_no_context_takeover,
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message passed the limit (bytes inflated so far, more than the limit).
    TooBig(usize),
    /// The data is not a valid deflate stream (the cause).
    Corrupt(String),
}

/// One leg's permessage-deflate state (see the module doc).
pub struct Codec {
    agreed: Agreed,
    level: u32,
    min_size: usize,
    /// The leg's own compressor, only with context takeover when sending.
    compress: Option<Box<Compress>>,
    /// The leg's own inflater, only when the peer takes its context over.
    inflate: Option<Box<Decompress>>,
    /// Received compressed messages are handed on still compressed (see
    /// [`Codec::set_forward_compressed`]).
    forward_compressed: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("agreed", &self.agreed)
            .field("level", &self.level)
            .finish()
    }
}

/// Per-thread contexts for messages that start afresh, so an idle leg holds none.
#[derive(Default)]
struct Pool {
    /// Reset compressors: (level, window bits, context).
    compress: Vec<(u32, u8, Box<Compress>)>,
    /// A reset inflater.
    inflate: Option<Box<Decompress>>,
    /// Compressed output before it is framed.
    scratch: Vec<u8>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A compressor for `level` and `bits` (8 bits: stored blocks, level 0 at 9 bits).
fn new_compress(level: u32, bits: u8) -> Box<Compress> {
    let (level, bits) = if bits <= 8 { (0, 9) } else { (level, bits) };
    Box::new(Compress::new_with_window_bits(
        Compression::new(level),
        false,
        bits,
    ))
}

fn new_inflate() -> Box<Decompress> {
    Box::new(Decompress::new_with_window_bits(false, INFLATE_BITS))
}

impl Codec {
    /// A leg's codec for what it agreed, with `deflate.level` and `deflate.min_message_size`.
    pub fn new(agreed: Agreed, cfg: &DeflateConfig) -> Codec {
        Codec {
            agreed,
            level: cfg.level,
            min_size: cfg.min_message_size,
            compress: None,
            inflate: None,
            forward_compressed: false,
        }
    }

    /// Hands received compressed messages on still compressed (checked by inflating, then
    /// the inflated copy dropped), as `Message::Frame` with RSV1, for a destination leg that
    /// can send them as they are ([`Codec::can_send_compressed`]). Only when the peer compresses
    /// each message on its own (no context takeover), so a message stands alone.
    pub fn set_forward_compressed(&mut self, on: bool) {
        self.forward_compressed = on && self.agreed.recv_reset;
    }

    /// Whether received compressed messages are handed on still compressed.
    pub fn forwards_compressed(&self) -> bool {
        self.forward_compressed
    }

    /// Whether a message compressed by another peer on its own (any window up to 15 bits) can
    /// be sent on this leg as it is: the peer reads a 15-bit window and wsrelay's own compressor
    /// here keeps no context that the message would have to join.
    pub fn can_send_compressed(&self) -> bool {
        self.agreed.send_bits == 15 && self.agreed.send_reset
    }

    /// What this leg agreed.
    pub fn agreed(&self) -> Agreed {
        self.agreed
    }

    /// Whether a message of `len` bytes is worth compressing (`deflate.min_message_size`).
    pub fn wants(&self, len: usize) -> bool {
        len >= self.min_size
    }

    /// Heap bytes of the contexts this leg keeps between messages (0 without context
    /// takeover); zlib's own estimate: 2^(bits+2) + 2^(memLevel+9) to compress,
    /// 2^bits + about 7 KiB to inflate.
    pub fn held_bytes(&self) -> usize {
        let c = self.compress.as_ref().map_or(0, |_| {
            (1usize << (self.agreed.send_bits.max(9) + 2)) + (1 << 17)
        });
        let d = self
            .inflate
            .as_ref()
            .map_or(0, |_| (1usize << INFLATE_BITS) + 7 * 1024);
        c + d
    }

    /// Compresses one message and hands the payload (the sync-flush tail removed, §7.2.1)
    /// to `frame`, which must copy it out.
    ///
    /// # Errors
    /// The compressor's error (zlib reports none for valid use; kept for safety).
    pub fn compress<R>(
        &mut self,
        data: &[u8],
        frame: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, String> {
        let (level, bits) = (self.level, self.agreed.send_bits);
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let pool = &mut *pool;
            let mut scratch = std::mem::take(&mut pool.scratch);
            scratch.clear();
            let result = if self.agreed.send_reset {
                let at = pool
                    .compress
                    .iter()
                    .position(|(l, b, _)| *l == level && *b == bits);
                let mut c = match at {
                    Some(i) => pool.compress.swap_remove(i).2,
                    None => new_compress(level, bits),
                };
                let r = deflate_into(&mut c, data, &mut scratch);
                c.reset();
                if pool.compress.len() < 4 {
                    pool.compress.push((level, bits, c));
                }
                r
            } else {
                let c = self
                    .compress
                    .get_or_insert_with(|| new_compress(level, bits));
                deflate_into(c, data, &mut scratch)
            };
            let out = result.map(|()| frame(&scratch));
            if scratch.capacity() <= SCRATCH_KEEP {
                pool.scratch = scratch;
            }
            out
        })
    }

    /// Inflates one compressed message (its payload as received, the tail added back,
    /// §7.2.2), stopping with [`InflateError::TooBig`] as soon as the output passes `limit`
    /// bytes.
    ///
    /// # Errors
    /// [`InflateError`].
    pub fn inflate(&mut self, data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        if self.agreed.recv_reset {
            POOL.with(|pool| {
                let mut d = pool.borrow_mut().inflate.take().unwrap_or_else(new_inflate);
                let r = inflate_into(&mut d, data, limit);
                d.reset(false);
                pool.borrow_mut().inflate = Some(d);
                r
            })
        } else {
            let d = self.inflate.get_or_insert_with(new_inflate);
            let r = inflate_into(d, data, limit);
            if r.is_err() {
                // A failed stream cannot go on; the leg ends anyway.
                d.reset(false);
            }
            r
        }
    }
}

/// Inflates a message that was compressed on its own (no context), with a per-thread inflater
/// and no size limit beyond what its sender's leg already checked.
///
/// # Errors
/// [`InflateError::Corrupt`] (not expected: the message was inflated once already).
pub fn inflate_alone(data: &[u8]) -> Result<Vec<u8>, InflateError> {
    POOL.with(|pool| {
        let mut d = pool.borrow_mut().inflate.take().unwrap_or_else(new_inflate);
        let r = inflate_into(&mut d, data, usize::MAX - 1);
        d.reset(false);
        pool.borrow_mut().inflate = Some(d);
        r
    })
}

/// Deflates `data` with a sync flush into `out` and removes the flush's tail.
fn deflate_into(c: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let start_in = c.total_in();
    out.reserve(data.len() / 2 + 64);
    loop {
        let used = usize::try_from(c.total_in() - start_in).unwrap_or(usize::MAX);
        let input = data.get(used..).unwrap_or(&[]);
        c.compress_vec(input, out, FlushCompress::Sync)
            .map_err(|e| format!("deflate failed: {e}"))?;
        let used = usize::try_from(c.total_in() - start_in).unwrap_or(usize::MAX);
        // The flush is complete once all input is taken and output room was left over.
        if used >= data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(1024));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    Ok(())
}

/// Inflates `data` and then the tail into a new buffer, at most `limit` bytes.
fn inflate_into(d: &mut Decompress, data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(3).clamp(64, cap));
    for input in [data, &TAIL[..]] {
        let start_in = d.total_in();
        loop {
            let used = usize::try_from(d.total_in() - start_in).unwrap_or(usize::MAX);
            let rest = input.get(used..).unwrap_or(&[]);
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(InflateError::TooBig(out.len()));
                }
                let grow = out.len().max(1024).min(cap - out.len());
                out.reserve_exact(grow);
            }
            let before = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            if out.len() > limit {
                return Err(InflateError::TooBig(out.len()));
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends the message's stream; nothing after it counts.
                return Ok(out);
            }
            let used = usize::try_from(d.total_in() - start_in).unwrap_or(usize::MAX);
            let progressed = (d.total_in(), d.total_out()) != before;
            if used >= input.len() && out.len() < out.capacity() {
                break;
            }
            if !progressed && out.len() < out.capacity() {
                return Err(InflateError::Corrupt(
                    "the deflate stream does not progress".into(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
