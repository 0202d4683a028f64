//! What a load measured: one connection's [`Stats`] and one run's [`RunResult`] line.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::TargetArgs;

/// One run's results: one JSON line on stdout. Fields that a mode does not produce are left
/// out. Units are in the names: `_us` microseconds, `_s` seconds, `_kib` KiB (1024 bytes),
/// `mb_per_s` 10^6 payload bytes per second (echoed payload, one direction).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResult {
    /// `closed`, `paced`, `throughput` or `hold`.
    pub mode: String,
    /// Load name (`--load`).
    pub load: String,
    /// Target name (`--target`).
    pub target: String,
    /// Target URL.
    pub url: String,
    /// Seconds since the Unix epoch at the end of the run.
    pub timestamp: u64,
    /// Connections (sessions for `hold`).
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight per connection (`throughput`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Requested total rate in messages per second (`paced`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Measured seconds.
    pub duration_s: f64,
    /// Connections that could not be opened.
    pub connect_errors: u64,
    /// Send/receive failures and wrong echoes after connecting.
    pub errors: u64,
    /// The first failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Echoed messages counted in the measured window.
    pub messages: u64,
    /// Echoed payload bytes counted in the measured window.
    pub bytes: u64,
    /// `messages / duration_s`.
    pub msgs_per_s: f64,
    /// `bytes / duration_s / 10^6`.
    pub mb_per_s: f64,
    /// Latency percentiles and extremes (send to echo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 90th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_us: Option<f64>,
    /// 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<f64>,
    /// Largest latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    /// Mean latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_us: Option<f64>,
    /// The watched process (`--watch-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_pid: Option<u32>,
    /// CPU seconds the watched process used in the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
    /// `cpu_s / duration_s * 100` (100 = one core busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    /// Watched process CPU microseconds per echoed message (both directions of the message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_msg: Option<f64>,
    /// CPU of the load generator itself over the measured window (100 = one core busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_cpu_pct: Option<f64>,
    /// CPU of the echo backend (`--backend-pid`) over the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_cpu_pct: Option<f64>,
    /// CPU the whole machine was busy over the measured window (every CPU, 100 = one core),
    /// less the watched process, the load generator and the backend: other processes, plus
    /// kernel work (softirq) not charged to any of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_pct: Option<f64>,
    /// `hold`: sessions opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened: Option<usize>,
    /// `hold`: sessions that echoed their check message correctly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echoed: Option<usize>,
    /// `hold`: seconds to open every session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_s: Option<f64>,
    /// `hold`: watched RSS before opening.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// `hold`: watched RSS with every session open and idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_open_kib: Option<u64>,
    /// `hold`: watched RSS after every session echoed once and went idle again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_echoed_kib: Option<u64>,
    /// `hold`: watched RSS after every session closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    /// `hold`: `(rss_open - rss_before) / opened`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_session_open: Option<f64>,
    /// `hold`: `(rss_echoed - rss_before) / opened`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_session_echoed: Option<f64>,
    /// `hold`: `(rss_after - rss_before) / rss_before * 100`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_close_pct: Option<f64>,
    /// `hold`: watched process descriptors before, while open, after close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fds_before: Option<usize>,
    /// See `fds_before`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fds_open: Option<usize>,
    /// See `fds_before`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fds_after: Option<usize>,
}

impl RunResult {
    pub(crate) fn new(
        mode: &str,
        target: &TargetArgs,
        connections: usize,
        size: usize,
    ) -> RunResult {
        RunResult {
            mode: mode.into(),
            load: target.load.clone(),
            target: target.target.clone(),
            url: target.url.clone(),
            connections,
            size,
            watch_pid: target.watch_pid,
            ..RunResult::default()
        }
    }

    /// Prints the JSON line (stdout) and the human line (stderr).
    pub(crate) fn emit(mut self) -> anyhow::Result<()> {
        self.timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        println!(
            "{}",
            serde_json::to_string(&self).context("encoding the result")?
        );
        eprintln!("{}", self.human());
        Ok(())
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let name = if self.target.is_empty() {
            self.url.as_str()
        } else {
            self.target.as_str()
        };
        let mut s = format!("{} {}: ", self.mode, name);
        if self.mode == "hold" {
            s.push_str(&format!(
                "{}/{} sessions echoing of {} requested (opened in {:.1} s)",
                self.echoed.unwrap_or(0),
                self.opened.unwrap_or(0),
                self.connections,
                self.open_s.unwrap_or(0.0)
            ));
            if let (Some(b), Some(o), Some(e), Some(a)) = (
                self.rss_before_kib,
                self.rss_open_kib,
                self.rss_echoed_kib,
                self.rss_after_kib,
            ) {
                s.push_str(&format!(
                    "; RSS {b} → {o} (open) → {e} (echoed) → {a} KiB (closed): {:.2} / {:.2} KiB per session, {:+.1}% after close",
                    self.kib_per_session_open.unwrap_or(0.0),
                    self.kib_per_session_echoed.unwrap_or(0.0),
                    self.after_close_pct.unwrap_or(0.0)
                ));
            }
        } else {
            s.push_str(&format!(
                "{} conns, {} B: {:.0} msg/s, {:.2} MB/s, p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
                self.connections,
                self.size,
                self.msgs_per_s,
                self.mb_per_s,
                self.p50_us.unwrap_or(0.0),
                self.p90_us.unwrap_or(0.0),
                self.p99_us.unwrap_or(0.0),
                self.p999_us.unwrap_or(0.0)
            ));
            if let Some(c) = self.cpu_pct {
                s.push_str(&format!(
                    ", watched CPU {c:.0}% ({:.1} µs/msg)",
                    self.cpu_us_per_msg.unwrap_or(0.0)
                ));
            }
            if let Some(c) = self.self_cpu_pct {
                s.push_str(&format!(", load generator CPU {c:.0}%"));
            }
            if let Some(c) = self.backend_cpu_pct {
                s.push_str(&format!(", backend CPU {c:.0}%"));
            }
            if let Some(c) = self.other_cpu_pct {
                s.push_str(&format!(", other CPU {c:.0}%"));
            }
        }
        if self.errors + self.connect_errors > 0 {
            s.push_str(&format!(
                "; {} connect errors, {} errors (first: {})",
                self.connect_errors,
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        s
    }
}

/// What one connection measured.
pub(crate) struct Stats {
    pub(crate) hist: Histogram<u64>,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Stats {
    pub(crate) fn new(hist: Histogram<u64>) -> Stats {
        Stats {
            hist,
            messages: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
        }
    }

    pub(crate) fn record(&mut self, latency: Duration, bytes: usize) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    pub(crate) fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    pub(crate) fn merge(&mut self, other: Stats) {
        if self.hist.add(&other.hist).is_err() {
            self.error("histogram merge failed");
        }
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}
