//! File watching for hot reload: notify (inotify) on the files' parent directories, a
//! debounce, and a periodic re-check as a safety net.
//!
//! The parent directory is watched, not the file's inode, so every way a file really changes
//! is seen: an in-place write, write-to-temp + rename, delete + recreate, and the Kubernetes
//! Secret volume swap, where `tls.crt -> ..data/tls.crt` stays put and `..data` is atomically
//! re-pointed to a new `..2026_11_21_…` directory (the events name `..data`, never
//! `tls.crt`). Any event in a watched directory counts; consumers compare content before
//! acting, so spurious triggers cost one read. The directories of the files' resolved
//! targets (through symlinks) are watched too, and re-resolved after every change, so a write
//! into the current `..2026_…` directory is seen as well.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Time from the first file event to the reload (covers editors and tools that write a file
/// in several steps); events that follow within it are covered by the same reload, and later
/// ones by the next, so a busy directory cannot postpone a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The directories to watch for `files`: each file's parent (`.` for bare names) and the
/// parent of its resolved target, when it resolves.
fn parent_dirs(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let parent = |f: &Path| match f.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = BTreeSet::new();
    for f in files {
        dirs.insert(parent(f));
        if let Ok(real) = std::fs::canonicalize(f) {
            dirs.insert(parent(&real));
        }
    }
    dirs
}

/// Watches `files` and calls `on_change` (on the runtime) [`DEBOUNCE`] after the first event
/// in their directories, and also every `recheck` regardless of events.
/// Runs until `shutdown`. If the OS watcher cannot be set up (e.g. inotify limits), this is
/// logged once and only the periodic re-check remains.
pub fn spawn<F, Fut>(
    what: &'static str,
    files: Vec<PathBuf>,
    recheck: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    mut on_change: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watched = BTreeSet::new();
    let mut watcher = match make_watcher(tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(what, error = %e, "cannot watch files; relying on the periodic re-check");
            None
        }
    };
    if let Some(w) = watcher.as_mut() {
        rewatch(what, w, &files, &mut watched);
    }
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(recheck);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick fires at once; the caller loaded the files already
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                ev = rx.recv() => {
                    if ev.is_none() {
                        // The watcher is gone; keep the periodic re-check.
                        tick.tick().await;
                    } else {
                        // Debounce: one DEBOUNCE after the first event, whatever follows
                        // (waiting for a quiet directory starved a file whose neighbour kept
                        // changing). Events meanwhile are covered by this reload.
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(DEBOUNCE) => {}
                        }
                        while rx.try_recv().is_ok() {}
                    }
                }
            }
            on_change().await;
            // Symlinks may point elsewhere now (a ..data swap): follow them.
            if let Some(w) = watcher.as_mut() {
                rewatch(what, w, &files, &mut watched);
            }
        }
    });
}

/// Adds watches for directories `files` now live in, and drops the ones no longer needed.
fn rewatch(
    what: &str,
    w: &mut notify::RecommendedWatcher,
    files: &[PathBuf],
    watched: &mut BTreeSet<PathBuf>,
) {
    let want = parent_dirs(files);
    for gone in watched.difference(&want).cloned().collect::<Vec<_>>() {
        let _ = w.unwatch(&gone);
        watched.remove(&gone);
    }
    for dir in want {
        if !watched.contains(&dir) {
            match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir);
                }
                Err(e) => {
                    tracing::debug!(what, dir = %dir.display(), error = %e, "cannot watch directory")
                }
            }
        }
    }
}

fn make_watcher(tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                // A full channel already holds a pending trigger: dropping this one is fine.
                let _ = tx.try_send(());
            }
        }
    })
}

/// A cheap content fingerprint of files (length + 64-bit FNV-1a of the bytes), to tell a real
/// change from a spurious event. `None` entries are files that could not be read.
pub fn fingerprint(files: &[&Path]) -> Vec<Option<(usize, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::read(f).ok().map(|b| {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for byte in &b {
                    h ^= u64::from(*byte);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                (b.len(), h)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    async fn wait_count(c: &AtomicUsize, at_least: usize) {
        for _ in 0..300 {
            if c.load(Ordering::SeqCst) >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no change reported (count {})", c.load(Ordering::SeqCst));
    }

    /// Watches `file` (re-check hourly), counting the reloads.
    fn counting_watch(file: &Path) -> (Arc<AtomicUsize>, CancellationToken) {
        let count = Arc::new(AtomicUsize::new(0));
        let c2 = count.clone();
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        spawn(
            "test",
            vec![file.to_path_buf()],
            Duration::from_secs(3600),
            &tracker,
            token.clone(),
            move || {
                let c = c2.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        (count, token)
    }

    #[tokio::test]
    async fn rename_into_place_and_symlink_swap_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tls.crt");
        std::fs::write(&file, "a").unwrap();
        let (count, token) = counting_watch(&file);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tmp = dir.path().join(".tls.crt.tmp");
        std::fs::write(&tmp, "b").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        wait_count(&count, 1).await;
        // A symlink re-pointed in the directory (the kubelet's ..data swap) is an event too.
        let before = count.load(Ordering::SeqCst);
        std::os::unix::fs::symlink("x", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        wait_count(&count, before + 1).await;
        token.cancel();
    }

    /// Issue 14 item 9: a neighbour file that changes every 100 ms does not postpone the
    /// reload (the old debounce waited for a quiet directory and never fired).
    #[tokio::test]
    async fn a_busy_directory_does_not_starve_the_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("registry.xml");
        let noisy = dir.path().join("agent.log");
        std::fs::write(&file, "a").unwrap();
        let (count, token) = counting_watch(&file);
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&file, "b").unwrap();
        // The neighbour keeps changing for 3 s; the reload must come meanwhile.
        let mut reloaded_while_busy = false;
        for n in 0..30 {
            std::fs::write(&noisy, format!("line {n}\n")).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            if count.load(Ordering::SeqCst) > 0 {
                reloaded_while_busy = true;
                break;
            }
        }
        token.cancel();
        assert!(
            reloaded_while_busy,
            "no reload while the directory stayed busy"
        );
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "one").unwrap();
        let a = fingerprint(&[&f]);
        std::fs::write(&f, "two").unwrap();
        assert_ne!(a, fingerprint(&[&f]));
        assert_eq!(fingerprint(&[&dir.path().join("missing")]), vec![None]);
    }
}
