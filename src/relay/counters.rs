//! What a session relayed, counted by its pumps.

use std::sync::atomic::{AtomicU64, Ordering};

/// Per-direction message and byte counters of one session.
///
/// The relay only touches these session-local atomics; the global Prometheus counters are
/// brought up to date from them by [`SessionTable::sync_metrics`](crate::session::table::SessionTable::sync_metrics) (on every scrape and when a
/// session ends), so the hot path never contends on shared counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Data messages (text + binary) client → service.
    pub messages_in: AtomicU64,
    /// Data messages service → client.
    pub messages_out: AtomicU64,
    /// Payload bytes client → service.
    pub bytes_in: AtomicU64,
    /// Payload bytes service → client.
    pub bytes_out: AtomicU64,
    /// What was already added to the global counters: messages in/out, bytes in/out.
    reported: [AtomicU64; 4],
}

impl Counters {
    /// Adds what happened since the last call to the global counters (exactly once, even with
    /// concurrent callers).
    pub fn sync(&self, m: &crate::metrics::ProxyMetrics) {
        let pairs = [
            (&self.messages_in, &m.messages_in),
            (&self.messages_out, &m.messages_out),
            (&self.bytes_in, &m.bytes_in),
            (&self.bytes_out, &m.bytes_out),
        ];
        for ((local, global), reported) in pairs.into_iter().zip(self.reported.iter()) {
            let now = local.load(Ordering::Relaxed);
            let before = reported.swap(now, Ordering::Relaxed);
            if now > before {
                global.inc_by(now - before);
            }
        }
    }
}
