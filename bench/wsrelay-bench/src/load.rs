//! The loads: closed-loop, paced, pipelined throughput, and hold.
//!
//! Timed loads connect every connection first, then run `warmup` unmeasured and `duration`
//! measured. A message counts (and its latency is recorded) when it was sent at or after the
//! end of the warm-up and its echo arrived before the end of the measured time. Latencies are
//! recorded in nanoseconds in an HDR histogram (1 ns .. 60 s, 3 significant digits) and
//! reported in microseconds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{close, next_data, Connector, Ws};
use crate::result::{RunResult, Stats};
use crate::{procfs, ClosedArgs, HoldArgs, PacedArgs, TargetArgs, ThroughputArgs, TimingArgs};

/// How long after the measured window in-flight echoes are still awaited.
const GRACE: Duration = Duration::from_secs(5);
/// Read buffer (bytes) of each load connection; hold sessions use [`HOLD_READ_BUFFER`].
const LOAD_READ_BUFFER: usize = 128 * 1024;
/// Read buffer (bytes) of each held session (the load generator's memory, not the target's).
const HOLD_READ_BUFFER: usize = 4 * 1024;
/// Descriptors kept free besides the connections (stdio, runtime, resolver).
const FD_RESERVE: u64 = 32;

/// An empty latency histogram: 1 ns to 60 s, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("creating the latency histogram")
}

/// A random payload of `size` bytes.
fn payload(size: usize) -> Bytes {
    let mut v = vec![0u8; size];
    fastrand::fill(&mut v);
    Bytes::from(v)
}

/// Fails early when the open-file limit cannot hold `connections` (the script raises the soft
/// limit to the hard one with `ulimit -n`).
fn check_fd_budget(connections: usize) -> anyhow::Result<()> {
    if let Some((soft, hard)) = procfs::nofile_limit() {
        let need = connections as u64 + FD_RESERVE;
        if soft < need {
            bail!(
                "{connections} connections need about {need} descriptors but the open-file limit is {soft} (hard {hard}); raise it with `ulimit -n {hard}` or open fewer"
            );
        }
    }
    Ok(())
}

/// Opens `n` connections, `concurrency` at a time. Returns the open ones, the number that
/// failed, and the first failure.
async fn connect_all(
    connector: &Connector,
    n: usize,
    concurrency: usize,
) -> (Vec<Ws>, u64, Option<String>) {
    let results: Vec<anyhow::Result<Ws>> = futures_util::stream::iter(0..n)
        .map(|_| connector.connect())
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut open = Vec::with_capacity(n);
    let mut failed = 0;
    let mut first = None;
    for r in results {
        match r {
            Ok(ws) => open.push(ws),
            Err(e) => {
                failed += 1;
                if first.is_none() {
                    first = Some(format!("{e:#}"));
                }
            }
        }
    }
    (open, failed, first)
}

/// Connections ready to run a timed load.
struct Prepared {
    conns: Vec<Ws>,
    backend_pid: Option<u32>,
    result: RunResult,
    stats: Stats,
    payload: Bytes,
}

async fn prepare(
    mode: &str,
    target: &TargetArgs,
    connections: usize,
    size: usize,
) -> anyhow::Result<Prepared> {
    if connections == 0 {
        bail!("--connections must be at least 1");
    }
    check_fd_budget(connections)?;
    let connector = Connector::new(target, LOAD_READ_BUFFER).await?;
    let (conns, failed, first) =
        connect_all(&connector, connections, target.connect_concurrency).await;
    if conns.is_empty() {
        bail!(
            "no connection to {} could be opened: {}",
            target.url,
            first.unwrap_or_default()
        );
    }
    let mut result = RunResult::new(mode, target, connections, size);
    result.connect_errors = failed;
    let mut stats = Stats::new(histogram()?);
    if let Some(e) = first {
        stats.first_error = Some(e);
    }
    Ok(Prepared {
        conns,
        backend_pid: target.backend_pid,
        result,
        stats,
        payload: payload(size),
    })
}

/// The measured window of a timed load.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    warm: Instant,
    end: Instant,
}

impl Window {
    fn new(t: &TimingArgs) -> Window {
        let start = Instant::now();
        let warm = start + t.warmup;
        Window {
            start,
            warm,
            end: warm + t.duration,
        }
    }
}

/// Waits for the tasks, samples the watched CPU over the measured window, fills the result.
async fn finish(
    mut p: Prepared,
    window: Window,
    timing: &TimingArgs,
    tasks: Vec<tokio::task::JoinHandle<Stats>>,
) -> anyhow::Result<()> {
    let pid = p.result.watch_pid;
    let me = std::process::id();
    let backend = p.backend_pid;
    let sample = || {
        (
            pid.and_then(procfs::cpu_seconds),
            procfs::cpu_seconds(me),
            backend.and_then(procfs::cpu_seconds),
            procfs::machine_busy_seconds(),
        )
    };
    tokio::time::sleep_until(window.warm).await;
    let (cpu0, self0, back0, all0) = sample();
    tokio::time::sleep_until(window.end).await;
    let (cpu1, self1, back1, all1) = sample();
    for t in tasks {
        match t.await {
            Ok(s) => p.stats.merge(s),
            Err(e) => p.stats.error(format!("connection task failed: {e}")),
        }
    }
    let secs = timing.duration.as_secs_f64().max(1e-9);
    let r = &mut p.result;
    r.duration_s = secs;
    r.messages = p.stats.messages;
    r.bytes = p.stats.bytes;
    r.errors = p.stats.errors;
    r.first_error = p.stats.first_error;
    r.msgs_per_s = p.stats.messages as f64 / secs;
    r.mb_per_s = p.stats.bytes as f64 / secs / 1e6;
    if p.stats.messages > 0 {
        let h = &p.stats.hist;
        let us = |ns: u64| ns as f64 / 1000.0;
        r.p50_us = Some(us(h.value_at_quantile(0.5)));
        r.p90_us = Some(us(h.value_at_quantile(0.9)));
        r.p99_us = Some(us(h.value_at_quantile(0.99)));
        r.p999_us = Some(us(h.value_at_quantile(0.999)));
        r.max_us = Some(us(h.max()));
        r.mean_us = Some(h.mean() / 1000.0);
    }
    let pct = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0) / secs * 100.0);
    r.self_cpu_pct = pct(self0, self1);
    r.backend_cpu_pct = pct(back0, back1);
    if let Some(all) = pct(all0, all1) {
        let watched = pct(cpu0, cpu1).unwrap_or(0.0);
        // The backend may be the watched process itself (direct target): count it once.
        let backend = if backend == pid {
            0.0
        } else {
            r.backend_cpu_pct.unwrap_or(0.0)
        };
        let ours = watched + r.self_cpu_pct.unwrap_or(0.0) + backend;
        r.other_cpu_pct = Some((all - ours).max(0.0));
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let cpu = (b - a).max(0.0);
        r.cpu_s = Some(cpu);
        r.cpu_pct = Some(cpu / secs * 100.0);
        if p.stats.messages > 0 {
            r.cpu_us_per_msg = Some(cpu * 1e6 / p.stats.messages as f64);
        }
    }
    p.result.emit()
}

/// `closed`: each connection sends a message and waits for its echo, back to back.
///
/// # Errors
/// No connection could be opened, or the descriptor limit is too low.
pub async fn closed(a: ClosedArgs) -> anyhow::Result<()> {
    let mut p = prepare("closed", &a.target, a.connections, a.size).await?;
    let window = Window::new(&a.timing);
    let hist = histogram()?;
    let tasks = p
        .conns
        .drain(..)
        .map(|ws| tokio::spawn(closed_conn(ws, p.payload.clone(), window, hist.clone())))
        .collect();
    finish(p, window, &a.timing, tasks).await
}

async fn closed_conn(mut ws: Ws, payload: Bytes, w: Window, hist: Histogram<u64>) -> Stats {
    let mut st = Stats::new(hist);
    loop {
        let t0 = Instant::now();
        if t0 >= w.end {
            break;
        }
        if let Err(e) = ws.send(Message::Binary(payload.clone())).await {
            st.error(format!("send: {e}"));
            break;
        }
        let echo = match timeout_at(w.end + GRACE, next_data(&mut ws)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                st.error(format!("receive: {e:#}"));
                break;
            }
            Err(_) => {
                st.error("no echo within the grace time");
                break;
            }
        };
        let t1 = Instant::now();
        if echo.len() != payload.len() {
            st.error(format!(
                "echo of {} bytes for {} sent",
                echo.len(),
                payload.len()
            ));
            break;
        }
        if t0 >= w.warm && t1 <= w.end {
            st.record(t1 - t0, echo.len());
        }
    }
    close(ws).await;
    st
}

/// When a pipelined writer may send its next message.
#[derive(Clone, Copy)]
enum Pacing {
    /// At most this many messages in flight.
    Window(usize),
    /// One message per `period`, the first at `first` (bursts to catch up when late).
    Every { period: Duration, first: Instant },
}

/// `paced`: a fixed total rate spread evenly over the connections (start times staggered).
///
/// # Errors
/// A rate that is not positive, no connection, or a low descriptor limit.
pub async fn paced(a: PacedArgs) -> anyhow::Result<()> {
    if !(a.rate.is_finite() && a.rate > 0.0) {
        bail!("--rate must be a positive number of messages per second");
    }
    let mut p = prepare("paced", &a.target, a.connections, a.size).await?;
    p.result.rate = Some(a.rate);
    let window = Window::new(&a.timing);
    let hist = histogram()?;
    let n = p.conns.len();
    let period = Duration::from_secs_f64(n as f64 / a.rate);
    let tasks = p
        .conns
        .drain(..)
        .enumerate()
        .map(|(i, ws)| {
            let first = window.start + period.mul_f64(i as f64 / n as f64);
            tokio::spawn(pipelined_conn(
                ws,
                p.payload.clone(),
                Pacing::Every { period, first },
                window,
                hist.clone(),
            ))
        })
        .collect();
    finish(p, window, &a.timing, tasks).await
}

/// `throughput`: each connection keeps `window` messages in flight.
///
/// # Errors
/// A zero window, no connection, or a low descriptor limit.
pub async fn throughput(a: ThroughputArgs) -> anyhow::Result<()> {
    if a.window == 0 {
        bail!("--window must be at least 1");
    }
    let mut p = prepare("throughput", &a.target, a.connections, a.size).await?;
    p.result.window = Some(a.window);
    let window = Window::new(&a.timing);
    let hist = histogram()?;
    let tasks = p
        .conns
        .drain(..)
        .map(|ws| {
            tokio::spawn(pipelined_conn(
                ws,
                p.payload.clone(),
                Pacing::Window(a.window),
                window,
                hist.clone(),
            ))
        })
        .collect();
    finish(p, window, &a.timing, tasks).await
}

/// One connection with a writer and a reader half: the writer sends as `pacing` allows and
/// queues each send time; the reader matches echoes to send times in order.
async fn pipelined_conn(
    ws: Ws,
    payload: Bytes,
    pacing: Pacing,
    w: Window,
    hist: Histogram<u64>,
) -> Stats {
    let (mut sink, mut stream) = ws.split();
    let (ts_tx, mut ts_rx) = mpsc::unbounded_channel::<Instant>();
    let (done_tx, mut done_rx) = oneshot::channel::<u64>();
    let permits = match pacing {
        Pacing::Window(n) => Some(Arc::new(Semaphore::new(n))),
        Pacing::Every { .. } => None,
    };
    let size = payload.len();
    let writer = {
        let permits = permits.clone();
        async move {
            let mut ticker = match pacing {
                Pacing::Every { period, first } => Some(tokio::time::interval_at(first, period)),
                Pacing::Window(_) => None,
            };
            let mut sent = 0u64;
            let mut err = None;
            loop {
                let ready = async {
                    if let Some(p) = &permits {
                        match p.acquire().await {
                            Ok(permit) => {
                                permit.forget();
                                true
                            }
                            Err(_) => false,
                        }
                    } else if let Some(t) = ticker.as_mut() {
                        t.tick().await;
                        true
                    } else {
                        true
                    }
                };
                if !matches!(timeout_at(w.end, ready).await, Ok(true)) {
                    break;
                }
                let now = Instant::now();
                if now >= w.end || ts_tx.send(now).is_err() {
                    break;
                }
                if let Err(e) = sink.send(Message::Binary(payload.clone())).await {
                    err = Some(format!("send: {e}"));
                    break;
                }
                sent += 1;
            }
            let _ = done_tx.send(sent);
            (sink, err)
        }
    };
    let reader = async move {
        let mut st = Stats::new(hist);
        let mut total: Option<u64> = None;
        let mut received = 0u64;
        loop {
            if total.is_some_and(|t| received >= t) {
                break;
            }
            let next = tokio::select! {
                t = &mut done_rx, if total.is_none() => {
                    total = Some(t.unwrap_or(0));
                    continue;
                }
                m = timeout_at(w.end + GRACE, stream.next()) => m,
            };
            let msg = match next {
                Err(_) => {
                    st.error("echoes missing after the grace time");
                    break;
                }
                Ok(None) => {
                    st.error("connection ended");
                    break;
                }
                Ok(Some(Err(e))) => {
                    st.error(format!("receive: {e}"));
                    break;
                }
                Ok(Some(Ok(Message::Close(f)))) => {
                    st.error(format!("closed by the server: {f:?}"));
                    break;
                }
                Ok(Some(Ok(m @ (Message::Binary(_) | Message::Text(_))))) => m,
                Ok(Some(Ok(_))) => continue,
            };
            let now = Instant::now();
            received += 1;
            if let Some(p) = &permits {
                p.add_permits(1);
            }
            let Ok(t0) = ts_rx.try_recv() else {
                st.error("an echo arrived for no sent message");
                break;
            };
            if msg.len() != size {
                st.error(format!("echo of {} bytes for {size} sent", msg.len()));
                break;
            }
            if t0 >= w.warm && now <= w.end {
                st.record(now - t0, size);
            }
        }
        (stream, st)
    };
    let ((sink, werr), (stream, mut st)) = tokio::join!(writer, reader);
    if let Some(e) = werr {
        st.error(e);
    }
    if let Ok(ws) = sink.reunite(stream) {
        close(ws).await;
    }
    st
}

/// `hold`: opens the sessions, idles, checks each echoes once, idles, closes them all, and
/// reads the watched process's RSS and descriptors at each step.
///
/// # Errors
/// A low descriptor limit or an unusable target URL. Sessions that fail to open or echo are
/// counted, not errors of the command.
pub async fn hold(a: HoldArgs) -> anyhow::Result<()> {
    if a.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    check_fd_budget(a.sessions)?;
    let connector = Connector::new(&a.target, HOLD_READ_BUFFER).await?;
    let pid = a.target.watch_pid;
    let mut r = RunResult::new("hold", &a.target, a.sessions, 16);
    r.rss_before_kib = pid.and_then(procfs::rss_kib);
    r.fds_before = pid.and_then(procfs::fd_count);

    let t0 = Instant::now();
    let (mut sessions, failed, first) =
        connect_all(&connector, a.sessions, a.target.connect_concurrency).await;
    // No further session is opened: with --http2-streams this lets go of the current HTTP/2
    // connection, which then closes with its last stream, as every other one does.
    drop(connector);
    r.open_s = Some(t0.elapsed().as_secs_f64());
    r.opened = Some(sessions.len());
    r.connect_errors = failed;
    r.first_error = first;
    tokio::time::sleep(a.settle).await;
    r.rss_open_kib = pid.and_then(procfs::rss_kib);
    r.fds_open = pid.and_then(procfs::fd_count);

    let checks: Vec<Result<(), String>> = futures_util::stream::iter(sessions.iter_mut())
        .enumerate()
        .map(|(i, ws)| echo_once(ws, i))
        .buffer_unordered(a.target.connect_concurrency.max(1))
        .collect()
        .await;
    let mut echoed = 0;
    for c in checks {
        match c {
            Ok(()) => echoed += 1,
            Err(e) => {
                r.errors += 1;
                if r.first_error.is_none() {
                    r.first_error = Some(e);
                }
            }
        }
    }
    r.echoed = Some(echoed);
    r.messages = echoed as u64;
    tokio::time::sleep(a.settle).await;
    r.rss_echoed_kib = pid.and_then(procfs::rss_kib);

    futures_util::stream::iter(sessions)
        .for_each_concurrent(512, close)
        .await;
    tokio::time::sleep(a.after_close).await;
    r.rss_after_kib = pid.and_then(procfs::rss_kib);
    r.fds_after = pid.and_then(procfs::fd_count);

    let opened = r.opened.unwrap_or(0).max(1) as f64;
    if let Some(before) = r.rss_before_kib {
        let per = |v: Option<u64>| v.map(|v| (v as f64 - before as f64) / opened);
        r.kib_per_session_open = per(r.rss_open_kib);
        r.kib_per_session_echoed = per(r.rss_echoed_kib);
        if before > 0 {
            r.after_close_pct = r
                .rss_after_kib
                .map(|a| (a as f64 - before as f64) / before as f64 * 100.0);
        }
    }
    r.emit()
}

/// Sends a 16-byte message unique to session `i` and checks the echo (10 s limit).
async fn echo_once(ws: &mut Ws, i: usize) -> Result<(), String> {
    let text = format!("hold-{i:011}");
    let sent = Bytes::from(text.into_bytes());
    let res = timeout(Duration::from_secs(10), async {
        ws.send(Message::Binary(sent.clone()))
            .await
            .map_err(|e| format!("session {i}: send: {e}"))?;
        let m = next_data(ws)
            .await
            .map_err(|e| format!("session {i}: receive: {e:#}"))?;
        if m.into_data() == sent {
            Ok(())
        } else {
            Err(format!("session {i}: wrong echo"))
        }
    })
    .await;
    res.unwrap_or_else(|_| Err(format!("session {i}: no echo within 10 s")))
}
