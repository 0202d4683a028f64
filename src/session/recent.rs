//! The last sessions that closed and the last upgrades that were refused, for local
//! inspection without the logs (`/application/websockets/closed`,
//! `/application/websockets/refused`, `wsrelay sessions --closed|--refused`).
//!
//! Each list keeps at most `admin.recent` entries (default 100; 0 keeps none), oldest dropped
//! first; an entry is about 300 bytes (its strings are cut: paths to 256 bytes), so memory is
//! bounded by the setting. Entries are added when a session ends or an upgrade is refused,
//! never on the relay's path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Longest path or cause kept in an entry, in bytes.
pub const MAX_TEXT: usize = 256;

/// `text` cut to [`MAX_TEXT`] bytes on a character boundary.
pub fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("").to_owned()
}

/// A session that ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosedSession {
    /// Session id.
    pub session_id: String,
    /// The client (`/127.0.0.1:5555`, as `/application/websockets`).
    pub client_address: String,
    /// The request URI (cut to 256 bytes).
    pub gateway_path: String,
    /// Eureka service id.
    pub service_id: String,
    /// The instance it was on at the end.
    pub instance_id: String,
    /// RFC 3339 start time (UTC).
    pub started_at: String,
    /// RFC 3339 end time (UTC).
    pub ended_at: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// The close code that ended it (1005 when none).
    pub close_code: u16,
    /// The close reason or the error.
    pub close_reason: String,
    /// `client`, `service` or `gateway` (the agent: shutdown, idle timeout, limits).
    pub closed_by: &'static str,
    /// Times it moved to another instance.
    pub failovers: u32,
    /// Messages client → service.
    pub messages_in: u64,
    /// Messages service → client.
    pub messages_out: u64,
    /// Bytes client → service.
    pub bytes_in: u64,
    /// Bytes service → client.
    pub bytes_out: u64,
}

/// An upgrade that was refused.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedUpgrade {
    /// RFC 3339 time (UTC).
    pub at: String,
    /// The client (`/127.0.0.1:5555`).
    pub client_address: String,
    /// The request path (cut to 256 bytes; the query is left out).
    pub path: String,
    /// The HTTP status it maps to (also under `handshake.failure = "close"`).
    pub status: u16,
    /// Why (cut to 256 bytes).
    pub cause: String,
}

/// A bounded list, newest last.
#[derive(Debug, Default)]
pub struct Recent<T> {
    cap: AtomicUsize,
    items: Mutex<VecDeque<T>>,
}

impl<T: Clone> Recent<T> {
    /// A list keeping at most `cap` entries.
    pub fn new(cap: usize) -> Recent<T> {
        Recent {
            cap: AtomicUsize::new(cap),
            items: Mutex::new(VecDeque::new()),
        }
    }

    /// Changes the bound (a config reload); extra entries go at the next push.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
        if cap == 0 {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            *items = VecDeque::new();
        }
    }

    /// Adds `item`, dropping the oldest past the bound.
    pub fn push(&self, item: T) {
        let cap = self.cap.load(Ordering::Relaxed);
        if cap == 0 {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        while items.len() >= cap {
            items.pop_front();
        }
        items.push_back(item);
    }

    /// The entries, newest first.
    pub fn newest_first(&self) -> Vec<T> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_newest_first_and_off_at_zero() {
        let r = Recent::new(2);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.newest_first(), [4, 3]);
        r.set_cap(0);
        r.push(9);
        assert!(r.newest_first().is_empty());
        assert_eq!(cut(&"é".repeat(200)).len(), 256);
    }
}
