//! systemd integration (`Type=notify`), without libsystemd (the `sd-notify` crate).
//!
//! - `READY=1` once the listener is bound and the first routing table is loaded;
//! - `STOPPING=1` when a shutdown starts;
//! - `WATCHDOG=1` every half of `WATCHDOG_USEC` while the runtime is alive.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op (sd_notify(3) semantics).

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::RegistryStatus;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Sends `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Spawns the readiness and watchdog tasks: `READY=1` as soon as `registry` reports a loaded
/// routing table (checked every 100 ms), and `WATCHDOG=1` at half the watchdog interval when
/// systemd asked for one. Both end with `shutdown`.
pub fn spawn(tracker: &TaskTracker, registry: Arc<RegistryStatus>, shutdown: CancellationToken) {
    let token = shutdown.clone();
    tracker.spawn(async move {
        loop {
            if registry.loaded() {
                send(&[NotifyState::Ready, NotifyState::Status("routing")]);
                tracing::debug!("ready: routing table loaded and listener bound");
                break;
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let period = (interval / 2).max(Duration::from_millis(10));
        tracker.spawn(async move {
            loop {
                send(&[NotifyState::Watchdog]);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(period) => {}
                }
            }
        });
    }
}
