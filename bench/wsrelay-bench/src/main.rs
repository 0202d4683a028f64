//! `wsrelay-bench`: the load generator and echo backend behind `bench/run.sh`.
//!
//! Commands (each load prints one JSON object per run on stdout and one human line on stderr):
//!
//! - `echo`: a WebSocket echo backend (RFC 6455 server; text and binary messages are sent back
//!   as they came, flushed when no further message is ready); `wss` with `--cert` and `--key`;
//! - `closed`: closed-loop latency: N connections, each sends a message and waits for its echo
//!   before sending the next; p50/p90/p99/p99.9 from an HDR histogram (3 significant digits);
//! - `paced`: open-loop latency: a fixed total rate spread over N connections, latency measured
//!   from each message's actual send to its echo;
//! - `throughput`: pipelined: N connections with up to `window` messages in flight each;
//!   msgs/s and MB/s (10^6 bytes of echoed payload per second, one direction);
//! - `hold`: opens N sessions, keeps them idle, checks every one still echoes, closes them, and
//!   reads a watched process's RSS (`/proc/PID/status` `VmRSS`) before, during and after;
//! - `report`: reads JSON result lines and prints the median table with ratios against
//!   `direct` and the targets (met or missed).
//!
//! Targets are `ws://` or `wss://` URLs; for `wss` the server certificate is checked against
//! `--ca-file`, or not at all with `--insecure` (signatures are still verified). TLS session
//! resumption is disabled so every connection pays a full TLS 1.3 handshake. With
//! `--http2-streams N`, sessions to a `wss://` URL are WebSockets over HTTP/2 (RFC 8441), N
//! extended CONNECT streams per TCP + TLS connection. With
//! `--watch-pid`, the CPU time (`/proc/PID/stat` utime + stime) that process used during the
//! measured window is reported too.
#![forbid(unsafe_code)]

mod conn;
mod echo;
mod load;
mod procfs;
mod report;
mod result;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "wsrelay-bench",
    version,
    about = "Load generator and echo backend for benchmarking wsrelay against nginx and HAProxy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// One command.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a WebSocket echo backend (prints `echo listening on ADDR` once bound).
    Echo(EchoArgs),
    /// Closed-loop latency: each connection sends one message and waits for its echo.
    Closed(ClosedArgs),
    /// Paced (open-loop) latency at a fixed total message rate.
    Paced(PacedArgs),
    /// Pipelined throughput with a window of messages in flight per connection.
    Throughput(ThroughputArgs),
    /// Open N idle sessions, check each still echoes, and measure a process's RSS.
    Hold(HoldArgs),
    /// Print the median table (and target checks) from JSON result files.
    Report(report::ReportArgs),
}

/// `echo` options.
#[derive(Args, Debug)]
struct EchoArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Runtime worker threads (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PEM certificate chain: serve `wss` (TLS) with it and `--key`.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

/// Where and how to connect, shared by every load.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// `ws://host:port/path` or `wss://host:port/path`.
    #[arg(long)]
    pub url: String,
    /// PEM CA bundle trusted for `wss://` targets.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the `wss://` server certificate chain or name (benchmarks only).
    #[arg(long)]
    pub insecure: bool,
    /// Name of the target in the results (`direct`, `wsrelay-ws`, `nginx-wss`, ...).
    #[arg(long, default_value = "")]
    pub target: String,
    /// Name of the load in the results (rows of the report are grouped by it).
    #[arg(long, default_value = "")]
    pub load: String,
    /// Process whose CPU time (and for `hold`, RSS) is measured, e.g. the relay's PID.
    #[arg(long)]
    pub watch_pid: Option<u32>,
    /// The echo backend's PID: its CPU time is reported too (`backend_cpu_pct`).
    #[arg(long)]
    pub backend_pid: Option<u32>,
    /// Runtime worker threads of the load generator (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Time limit for opening one connection (TCP, TLS and the upgrade); a server that
    /// stops accepting (connection limit reached) makes connections fail, not hang.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub connect_timeout: Duration,
    /// Connections opened at the same time while connecting.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// WebSockets over HTTP/2 (RFC 8441; `wss://` URLs only): each connection (session) of
    /// the load is an extended CONNECT stream (`:protocol websocket`), N streams per TCP + TLS
    /// connection (ALPN `h2`); a new connection is opened when the current one has carried N.
    /// Keep N at or below the server's concurrent-stream limit (wsrelay: tls.http2_max_streams,
    /// 100). Without it, every session is its own HTTP/1.1 connection.
    #[arg(long, value_name = "N")]
    pub http2_streams: Option<usize>,
}

/// Timing shared by the timed loads.
#[derive(Args, Debug, Clone)]
pub struct TimingArgs {
    /// Measured time (humantime: `10s`, `500ms`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured warm-up before the measured time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub warmup: Duration,
}

/// `closed` options.
#[derive(Args, Debug)]
pub struct ClosedArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    timing: TimingArgs,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Message payload size in bytes (binary messages).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// `paced` options.
#[derive(Args, Debug)]
pub struct PacedArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    timing: TimingArgs,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Message payload size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Total messages per second over all connections.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
}

/// `throughput` options.
#[derive(Args, Debug)]
pub struct ThroughputArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    timing: TimingArgs,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Message payload size in bytes.
    #[arg(long, default_value_t = 65536)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 8)]
    window: usize,
}

/// `hold` options.
#[derive(Args, Debug)]
pub struct HoldArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Sessions to open and hold (capped by this process's open-file limit).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Idle time after opening (and after the echo check) before RSS is read.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    settle: Duration,
    /// Time after closing every session before the final RSS is read.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    after_close: Duration,
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Echo(a) => a.threads,
        Cmd::Closed(a) => a.target.threads,
        Cmd::Paced(a) => a.target.threads,
        Cmd::Throughput(a) => a.target.threads,
        Cmd::Hold(a) => a.target.threads,
        Cmd::Report(a) => {
            return match report::run(a) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wsrelay-bench report: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let rt = match runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsrelay-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Echo(a) => {
                let tls = a
                    .cert
                    .zip(a.key)
                    .map(|(cert, key)| echo::TlsFiles { cert, key });
                echo::run(a.listen, tls).await
            }
            Cmd::Closed(a) => load::closed(a).await,
            Cmd::Paced(a) => load::paced(a).await,
            Cmd::Throughput(a) => load::throughput(a).await,
            Cmd::Hold(a) => load::hold(a).await,
            Cmd::Report(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsrelay-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
