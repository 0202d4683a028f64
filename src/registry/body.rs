//! A Eureka answer's body collected under `registry.max_payload_size`, with a memory peak of
//! at most 1.25 × the limit however large the answer is (issue 14 item 10).
//!
//! Three things made an oversized answer cost more than the limit: the body grew by doubling
//! (a copying reallocation holds the old and the new buffer at once), the gzip decoder's
//! output was a stream of its own, and a `Content-Length` over the limit was read before being
//! refused. Here:
//! - a `Content-Length` (of an uncompressed answer) over the limit is refused before any
//!   byte is read; one within it sizes the buffer exactly;
//! - otherwise the buffer doubles up to [`DOUBLING_UP_TO`] (or an eighth of the limit if
//!   that is smaller), then takes the whole limit in one step: the buffers left behind by the
//!   doubling add up to less than three times that, and pages of the final buffer that are
//!   not written stay virtual, so a small answer costs about its size and a large one at most
//!   the limit plus 3 MiB;
//! - gzip (`Content-Encoding: gzip`, which Eureka's `ResponseCacheImpl` serves when asked) is
//!   inflated with `flate2` as the chunks arrive into that buffer, so the compressed form is
//!   never held whole and the limit applies to the inflated size (a gzip bomb stops at the
//!   limit).

use std::io::Write as _;

/// Size up to which a body buffer of unknown final size grows by doubling, in bytes; past it
/// the buffer takes the whole limit at once (see the module doc).
pub(crate) const DOUBLING_UP_TO: usize = 1 << 20;

/// The body went over the limit (see [`Collector::push`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// A body buffer that refuses to grow past `max` bytes (see the module doc).
#[derive(Debug)]
pub(crate) struct Limited {
    buf: Vec<u8>,
    max: usize,
}

impl Limited {
    /// An empty buffer for at most `max` bytes; `exact` (a known length within `max`) is
    /// reserved at once.
    fn new(max: usize, exact: Option<usize>) -> Limited {
        Limited {
            buf: Vec::with_capacity(exact.unwrap_or(0)),
            max,
        }
    }

    /// Appends `data`, or fails without growing when the total would pass the limit.
    fn push(&mut self, data: &[u8]) -> Result<(), TooLarge> {
        let needed = self.buf.len().checked_add(data.len()).ok_or(TooLarge)?;
        if needed > self.max {
            return Err(TooLarge);
        }
        if needed > self.buf.capacity() {
            let step_limit = DOUBLING_UP_TO.min(self.max / 8);
            let target = if needed <= step_limit {
                needed.max(self.buf.capacity() * 2).min(step_limit)
            } else {
                self.max
            };
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
}

impl std::io::Write for Limited {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.push(data)
            .map_err(|TooLarge| std::io::Error::other(TooLarge))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body over the size limit")
    }
}

impl std::error::Error for TooLarge {}

/// Why a body could not be collected.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the limit (inflated size for gzip).
    TooLarge,
    /// The gzip stream is corrupt or truncated (the message says how).
    Gzip(String),
}

/// Collects one answer's body chunk by chunk (see the module doc).
#[derive(Debug)]
pub(crate) enum Collector {
    /// An identity-encoded body.
    Plain(Limited),
    /// A gzip body, inflated as it arrives (`MultiGzDecoder`: concatenated members too, as
    /// `gunzip` reads them).
    Gzip(Box<flate2::write::MultiGzDecoder<Limited>>),
}

impl Collector {
    /// A collector for an answer with `max` bytes allowed (after inflating), `gzip` when the
    /// answer says `Content-Encoding: gzip`, and its `Content-Length` if given.
    ///
    /// # Errors
    /// [`BodyError::TooLarge`] when an uncompressed answer announces more than `max` bytes.
    pub(crate) fn new(
        max: usize,
        gzip: bool,
        content_length: Option<u64>,
    ) -> Result<Collector, BodyError> {
        if gzip {
            return Ok(Collector::Gzip(Box::new(
                flate2::write::MultiGzDecoder::new(Limited::new(max, None)),
            )));
        }
        let exact = match content_length.map(usize::try_from) {
            Some(Ok(n)) if n <= max => Some(n),
            Some(_) => return Err(BodyError::TooLarge),
            None => None,
        };
        Ok(Collector::Plain(Limited::new(max, exact)))
    }

    /// Takes the next chunk of the body as received.
    ///
    /// # Errors
    /// [`BodyError::TooLarge`] past the limit; [`BodyError::Gzip`] for a corrupt gzip stream.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        match self {
            Collector::Plain(l) => l.push(chunk).map_err(|TooLarge| BodyError::TooLarge),
            Collector::Gzip(d) => d.write_all(chunk).map_err(gzip_error),
        }
    }

    /// The whole body, once every chunk was pushed.
    ///
    /// # Errors
    /// [`BodyError::Gzip`] when the gzip stream ends early (no trailer) or is corrupt.
    pub(crate) fn finish(self) -> Result<Vec<u8>, BodyError> {
        match self {
            Collector::Plain(l) => Ok(l.buf),
            Collector::Gzip(d) => d.finish().map(|l| l.buf).map_err(gzip_error),
        }
    }
}

fn gzip_error(e: std::io::Error) -> BodyError {
    if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
        BodyError::TooLarge
    } else {
        BodyError::Gzip(format!("invalid gzip body: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn collect(max: usize, gz: bool, len: Option<u64>, body: &[u8]) -> Result<Vec<u8>, BodyError> {
        let mut c = Collector::new(max, gz, len)?;
        for chunk in body.chunks(1000) {
            c.push(chunk)?;
        }
        c.finish()
    }

    #[test]
    fn bodies_within_the_limit_come_back_whole_plain_or_gzip() {
        let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(collect(50_000, false, None, &body).unwrap(), body);
        assert_eq!(collect(50_000, false, Some(50_000), &body).unwrap(), body);
        assert_eq!(collect(50_000, true, None, &gzip(&body)).unwrap(), body);
        // Two gzip members, as `cat a.gz b.gz`.
        let two = [gzip(b"ab"), gzip(b"cd")].concat();
        assert_eq!(collect(10, true, None, &two).unwrap(), b"abcd");
    }

    #[test]
    fn over_the_limit_is_refused_by_its_length_or_while_reading_or_inflating() {
        let body = vec![b' '; 10_001];
        assert!(matches!(
            Collector::new(10_000, false, Some(10_001)),
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            collect(10_000, false, None, &body),
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            collect(10_000, true, None, &gzip(&body)),
            Err(BodyError::TooLarge)
        ));
        let truncated = gzip(&body[..5000]);
        assert!(matches!(
            collect(10_000, true, None, &truncated[..truncated.len() - 4]),
            Err(BodyError::Gzip(_))
        ));
    }

    /// The buffers a body leaves behind while it grows add up to less than three times the
    /// doubling limit (an eighth of the limit for small limits), then it takes the limit.
    #[test]
    fn growth_jumps_to_the_limit_after_the_doubling_steps() {
        for max in [1 << 20, 64 << 20] {
            let mut l = Limited::new(max, None);
            let mut left_behind = 0;
            for _ in 0..(max / 10_000) {
                let before = l.buf.capacity();
                l.push(&[0u8; 10_000]).unwrap();
                if l.buf.capacity() != before {
                    left_behind += before;
                }
                assert!(l.buf.capacity() <= max);
            }
            assert!(
                left_behind < 3 * DOUBLING_UP_TO.min(max / 8),
                "{max}: {left_behind}"
            );
            assert_eq!(l.buf.capacity(), max);
        }
    }
}
