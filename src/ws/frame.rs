//! RFC 6455 frames apart from any I/O (as mini-redis's `Frame`): parsing and checking a frame
//! header (§5.2), encoding a frame, masking (§5.3). [`super::leg::Leg`] does the reading and
//! writing and keeps the message state.

use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;

/// Frame and message size limits of a leg, in bytes (`limits.max_frame_size`,
/// `limits.max_message_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (all fragments together), in bytes.
    pub max_message_size: usize,
    /// Largest single frame payload, in bytes.
    pub max_frame_size: usize,
}

impl Default for Limits {
    /// 64 MiB messages and 16 MiB frames (tungstenite's defaults).
    fn default() -> Self {
        Limits {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
        }
    }
}

/// RSV1, set on the first frame of a compressed message (RFC 7692 §6); or it into the opcode
/// given to [`encode`].
pub const RSV1: u8 = 0x40;
/// Opcode (RFC 6455 §5.2).
pub const OP_CONTINUE: u8 = 0;
/// Opcode (RFC 6455 §5.2).
pub const OP_TEXT: u8 = 1;
/// Opcode (RFC 6455 §5.2).
pub const OP_BINARY: u8 = 2;
/// Opcode (RFC 6455 §5.2).
pub const OP_CLOSE: u8 = 8;
/// Opcode (RFC 6455 §5.2).
pub const OP_PING: u8 = 9;
/// Opcode (RFC 6455 §5.2).
pub const OP_PONG: u8 = 10;

/// A parsed frame header (§5.2).
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// FIN: the last frame of a message.
    pub fin: bool,
    /// The opcode (`OP_*`).
    pub opcode: u8,
    /// RSV1: a compressed message (permessage-deflate, RFC 7692 §6).
    pub rsv1: bool,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub len: usize,
}

/// Parses the frame header at the start of `buf`, if complete: the header and its size in
/// bytes, or `Ok(None)` when more bytes are needed. Checked against the role (`server`:
/// frames in must be masked, §5.1), the limits (from the header, before the payload
/// arrives), and the message state: `in_message` is the length so far of a fragmented
/// message in progress, `None` when none is (§5.4). `rsv1_ok`: permessage-deflate was agreed,
/// so RSV1 may be set on a message's first frame (RFC 7692 §6), never on a continuation or a
/// control frame (§6.1).
///
/// # Errors
/// The `ProtocolError` or `CapacityError::MessageTooLong` of the first rule broken.
#[inline]
pub fn parse_head(
    buf: &[u8],
    server: bool,
    limits: &Limits,
    in_message: Option<usize>,
    rsv1_ok: bool,
) -> Result<Option<(Head, usize)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let size = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < size {
        return Ok(None);
    }
    let len = match ext {
        0 => u64::from(len7),
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(b)
        }
    };
    let mask = masked.then(|| {
        let m = &buf[2 + ext..size];
        [m[0], m[1], m[2], m[3]]
    });
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let rsv1 = b0 & RSV1 != 0;
    if b0 & 0x30 != 0 || (rsv1 && !(rsv1_ok && (opcode == OP_TEXT || opcode == OP_BINARY))) {
        return Err(ProtocolError::NonZeroReservedBits.into());
    }
    match opcode {
        OP_CONTINUE | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame.into());
            }
            if len > 125 {
                return Err(ProtocolError::ControlFrameTooBig.into());
            }
        }
        3..=7 => return Err(ProtocolError::UnknownDataFrameType(opcode).into()),
        _ => return Err(ProtocolError::UnknownControlFrameType(opcode).into()),
    }
    if server && !masked {
        return Err(ProtocolError::UnmaskedFrameFromClient.into());
    }
    if !server && masked {
        return Err(ProtocolError::MaskedFrameFromServer.into());
    }
    let too_long = |size: u64, max: usize| {
        WsError::Capacity(CapacityError::MessageTooLong {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            max_size: max,
        })
    };
    let len = match usize::try_from(len) {
        Ok(l) if l <= limits.max_frame_size => l,
        _ => return Err(too_long(len, limits.max_frame_size)),
    };
    match (opcode, in_message) {
        (OP_CONTINUE, None) => return Err(ProtocolError::UnexpectedContinueFrame.into()),
        (OP_TEXT | OP_BINARY, Some(_)) => {
            return Err(ProtocolError::ExpectedFragment(Data::Continue).into())
        }
        _ => {}
    }
    if opcode <= OP_BINARY {
        let so_far = in_message.unwrap_or(0);
        let total = so_far.saturating_add(len);
        if total > limits.max_message_size {
            return Err(too_long(total as u64, limits.max_message_size));
        }
    }
    Ok(Some((
        Head {
            fin,
            opcode,
            rsv1,
            mask,
            len,
        },
        size,
    )))
}

/// Appends one frame (FIN set) with opcode `opcode` (or'ed with [`RSV1`] for a compressed
/// message) and payload `a` followed by `b` to
/// `out` (§5.2); `masked` (the client role) masks it with a fresh random key (§5.3).
#[inline]
pub fn encode(out: &mut Vec<u8>, masked: bool, opcode: u8, a: &[u8], b: &[u8]) {
    let len = a.len() + b.len();
    out.reserve(14 + len);
    out.push(0x80 | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if !masked {
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    } else {
        // §5.3: a fresh, unpredictable masking key per frame.
        let key: [u8; 4] = rand::random();
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        apply_mask(&mut out[start..], key);
    }
}

/// XORs `buf` with the masking key `key`, starting at key offset 0 (RFC 6455 §5.3); the same
/// operation masks and unmasks.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ k).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_size: 1000,
        max_frame_size: 600,
    };

    /// RSV1 is a compressed message's mark only where permessage-deflate was agreed, and only
    /// on a data message's first frame (RFC 7692 §6, §6.1); RSV2/RSV3 never.
    #[test]
    fn rsv1_only_on_a_first_data_frame_with_deflate() {
        let p = |b: &[u8], in_message, ok| parse_head(b, false, &LIMITS, in_message, ok);
        let (h, _) = p(&[0xc1, 0x01], None, true).unwrap().unwrap();
        assert!(h.rsv1 && h.fin && h.opcode == OP_TEXT);
        let (h, _) = p(&[0x42, 0x01], None, true).unwrap().unwrap();
        assert!(h.rsv1 && !h.fin && h.opcode == OP_BINARY);
        let (h, _) = p(&[0x82, 0x01], None, true).unwrap().unwrap();
        assert!(!h.rsv1);
        let reserved = |r: Result<Option<(Head, usize)>, WsError>| {
            matches!(
                r,
                Err(WsError::Protocol(ProtocolError::NonZeroReservedBits))
            )
        };
        assert!(reserved(p(&[0xc1, 0x01], None, false)), "no deflate agreed");
        assert!(reserved(p(&[0xc0, 0x01], Some(3), true)), "continuation");
        assert!(reserved(p(&[0xc9, 0x00], None, true)), "ping");
        assert!(reserved(p(&[0xa1, 0x01], None, true)), "RSV2");
        assert!(reserved(p(&[0x91, 0x01], None, true)), "RSV3");
    }

    /// Headers parse from bytes alone: incomplete ones wait, lengths in all three encodings,
    /// and every rule is checked from the header, before any payload.
    #[test]
    fn headers_parse_and_are_checked_without_io() {
        let parse =
            |b: &[u8], server, in_message| parse_head(b, server, &LIMITS, in_message, false);
        // Incomplete: 1 byte, or a 16-bit length without its bytes.
        assert!(parse(&[0x81], false, None).unwrap().is_none());
        assert!(parse(&[0x82, 126, 0x01], false, None).unwrap().is_none());
        let (h, size) = parse(&[0x82, 126, 0x01, 0x2c], false, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.len, size),
            (true, OP_BINARY, None, 300, 4)
        );
        let (h, size) = parse(&[0x01, 0x85, 1, 2, 3, 4], true, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.fin, h.mask, h.len, size),
            (false, Some([1, 2, 3, 4]), 5, 6)
        );
        let err = |b: &[u8], server, in_message| parse(b, server, in_message).unwrap_err();
        assert!(matches!(
            err(&[0x81, 0x05], true, None),
            WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)
        ));
        assert!(matches!(
            err(&[0x81, 0x85, 0, 0, 0, 0], false, None),
            WsError::Protocol(ProtocolError::MaskedFrameFromServer)
        ));
        assert!(matches!(
            err(&[0xc1, 0x00], false, None),
            WsError::Protocol(ProtocolError::NonZeroReservedBits)
        ));
        assert!(matches!(
            err(&[0x09, 0x00], false, None),
            WsError::Protocol(ProtocolError::FragmentedControlFrame)
        ));
        assert!(matches!(
            err(&[0x80, 0x00], false, None),
            WsError::Protocol(ProtocolError::UnexpectedContinueFrame)
        ));
        assert!(matches!(
            err(&[0x81, 0x00], false, Some(10)),
            WsError::Protocol(ProtocolError::ExpectedFragment(_))
        ));
        // Over the frame limit (601), and over the message limit with what came before.
        assert!(matches!(
            err(&[0x82, 126, 0x02, 0x59], false, None),
            WsError::Capacity(CapacityError::MessageTooLong { size: 601, .. })
        ));
        assert!(matches!(
            err(&[0x80, 126, 0x01, 0xf4], false, Some(600)),
            WsError::Capacity(CapacityError::MessageTooLong { size: 1100, .. })
        ));
    }

    #[test]
    fn encoded_frames_parse_back() {
        for masked in [false, true] {
            for len in [0usize, 125, 126, 65535, 65536] {
                let mut out = Vec::new();
                let payload = vec![7u8; len];
                encode(
                    &mut out,
                    masked,
                    OP_BINARY,
                    &payload[..len / 2],
                    &payload[len / 2..],
                );
                let limits = Limits {
                    max_message_size: 1 << 20,
                    max_frame_size: 1 << 20,
                };
                let (h, size) = parse_head(&out, masked, &limits, None, false)
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    (h.len, h.mask.is_some(), out.len()),
                    (len, masked, size + len)
                );
                let mut body = out[size..].to_vec();
                if let Some(key) = h.mask {
                    apply_mask(&mut body, key);
                }
                assert_eq!(body, payload);
            }
        }
    }
}
