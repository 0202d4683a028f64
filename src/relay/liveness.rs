//! When each leg was last heard from and when data last passed: keepalive and idle timeout.

use std::sync::atomic::Ordering;
use std::time::Duration;

/// When a leg was last heard from (any frame), in milliseconds since the relay started, and
/// whether the pump that reads it is held back by its destination (then the leg is not read,
/// so its silence says nothing, issue 14 item 2).
pub(super) struct Heard {
    pub(super) start: tokio::time::Instant,
    pub(super) last_ms: std::sync::atomic::AtomicU64,
    pub(super) unread: std::sync::atomic::AtomicBool,
    /// The leg's [`ReadProgress::bytes_read`] at the last keepalive tick.
    pub(super) read_seen: std::sync::atomic::AtomicU64,
}

impl Heard {
    pub(super) fn new(start: tokio::time::Instant) -> Heard {
        Heard {
            start,
            last_ms: std::sync::atomic::AtomicU64::new(0),
            unread: std::sync::atomic::AtomicBool::new(false),
            read_seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Bytes arrived on the leg since the last call (its read counter moved to `read`): it
    /// counts as heard now, even if they are the middle of a frame that is not complete yet
    /// (a peer sending a long message cannot answer a ping before it ends).
    pub(super) fn saw_bytes(&self, read: u64) {
        if self.read_seen.swap(read, Ordering::Relaxed) != read {
            self.touch();
        }
    }

    /// The pump reading this leg stops (`true`) or starts again (`false`) because of its
    /// destination's backpressure. Starting again counts as hearing the leg: it was not
    /// listened to meanwhile.
    pub(super) fn set_unread(&self, unread: bool) {
        // A load first: the common case (being read, as before) writes nothing per message.
        if self.unread.load(Ordering::Relaxed) != unread {
            self.unread.store(unread, Ordering::Relaxed);
            if !unread {
                self.touch();
            }
        }
    }

    /// Whether the leg can be judged by its silence (it is being read).
    pub(super) fn judged(&self) -> bool {
        !self.unread.load(Ordering::Relaxed)
    }

    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(super) fn silent_for(&self) -> Duration {
        let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        tokio::time::Instant::now().saturating_duration_since(last)
    }
}

/// Time of the last data message, in milliseconds since the relay started (shared by both
/// directions of one session).
pub(super) struct Activity {
    pub(super) start: tokio::time::Instant,
    pub(super) last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no data has passed for `idle`.
    pub(super) async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}
