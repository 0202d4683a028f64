//! The `wsrelay` command: `run` (default), `check`, `demo`.
//!
//! Exit status: 0 on a clean shutdown, 64 (EX_USAGE) for an invalid config, 1 for other
//! start-up failures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use wsrelay::config::{Config, LogFormat, DEFAULT_CONFIG_PATH};

/// jemalloc instead of glibc malloc: after a burst of sessions closes, glibc kept their memory
/// (RSS stayed 20× the pre-burst level in `bench/run.sh`'s hold load); jemalloc returns it.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc options (read at its start-up): a background thread purges unused pages, dirty
/// pages go back to the kernel after 1 s (`dirty_decay_ms`, milliseconds) and are not kept as
/// "muzzy" (`muzzy_decay_ms:0`), so an idle agent's RSS drops soon after sessions close
/// without any allocation activity to trigger the purge. `MALLOC_CONF`-style string, NUL
/// terminated; `_RJEM_MALLOC_CONF` in the environment overrides it.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Returning the allocator's per-thread caches when a worker goes idle.
///
/// jemalloc keeps a cache of freed objects in every thread (its tcache) and trims it only as
/// that thread allocates again. After a burst of sessions closes, an idle tokio worker
/// allocates nothing, so its cache kept the burst's objects, and the slabs they sit in stayed
/// resident: `bench/run.sh`'s hold measured RSS 3 s after 9,900 sessions closed at +16 % (ws)
/// and +24 % (wss) over the level before the burst, against +8 % and +12 % with the cache off
/// (`_RJEM_MALLOC_CONF=tcache:false`, which costs ~15 % more CPU per 64 KiB message). So a
/// worker flushes its cache (`mallctl("thread.tcache.flush")`, jemalloc 5.3) when it parks,
/// at most once per [`FLUSH_EVERY`], and a task ticking at that period wakes a worker after a
/// burst, so the last park after it flushes too. Busy workers keep the cache's fast path.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
mod tcache {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    /// Least time between two flushes of one thread's cache.
    pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

    thread_local! {
        static LAST_FLUSH: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    /// For `tokio::runtime::Builder::on_thread_park`: flushes this thread's cache when the
    /// last flush is at least [`FLUSH_EVERY`] ago.
    pub fn on_park() {
        let now = Instant::now();
        let due = LAST_FLUSH.with(|last| match last.get() {
            Some(t) if now.duration_since(t) < FLUSH_EVERY => false,
            _ => {
                last.set(Some(now));
                true
            }
        });
        if due {
            flush();
        }
    }

    /// Wakes a worker every [`FLUSH_EVERY`], so that a worker idle after a burst parks once
    /// more, late enough to flush.
    pub async fn tick() {
        let mut t = tokio::time::interval(FLUSH_EVERY);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
        }
    }

    /// Returns the calling thread's cached objects to their arenas; jemalloc's background
    /// thread then purges the pages that emptied (`dirty_decay_ms`). A failure (no tcache)
    /// is ignored: there is nothing to return.
    fn flush() {
        // SAFETY: "thread.tcache.flush" is a void mallctl: it reads and writes nothing, so the
        // old/new pointers are null with length 0, as jemalloc's manual specifies; the name is
        // a NUL-terminated static string.
        let _ = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"thread.tcache.flush".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
    }
}

/// WebSocket gateway sidecar for Eureka-based platforms (Zowe API Mediation Layer).
#[derive(Parser, Debug)]
#[command(
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WSRELAY_COMMIT"), ")"),
    about
)]
struct Cli {
    /// Config file (TOML) [default: /etc/wsrelay/wsrelay.toml]. Not taken by `demo`.
    #[arg(long, short, global = true, env = "WSRELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HealthCheck {
    /// `/application/health/liveness`: the process answers.
    Liveness,
    /// `/application/health/readiness`: a routing table is loaded and no drain is running.
    Readiness,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the config and the files it names, fetch the registry once, print the route
    /// table.
    Check {
        /// Do not touch the network: validate the config and load its files only (Eureka is
        /// not contacted).
        #[arg(long)]
        offline: bool,
        /// Print the effective config first (every key with its value, defaults included;
        /// secrets as ***).
        #[arg(long)]
        print: bool,
    },
    /// Print the live sessions of a running agent (from /application/websockets), or the last
    /// ones that closed, or the last refused upgrades.
    Sessions {
        /// The last sessions that ended: close code, reason, who closed, duration, traffic.
        #[arg(long, conflicts_with = "refused")]
        closed: bool,
        /// The last refused upgrades: status, cause, client, path.
        #[arg(long)]
        refused: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print the routing table of a running agent (from /application/routes).
    Routes(RemoteArgs),
    /// Probe a running agent's health (exit 0 when UP, 1 otherwise): for exec probes.
    Health {
        /// Which check.
        #[arg(value_enum, default_value = "readiness")]
        check: HealthCheck,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell (the Debian package
    /// installs them).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; the Debian package installs it as wsrelay(1)).
    #[command(hide = true)]
    Man,
    /// Run on an embedded default: self-signed certificate, bundled registry, echo service.
    Demo {
        /// Listener address.
        #[arg(long, default_value = "127.0.0.1:10010")]
        listen: std::net::SocketAddr,
    },
}

/// Where and how to reach a running agent.
#[derive(clap::Args, Debug)]
struct RemoteArgs {
    /// Base URL of the agent (default: derived from the config's listen address and TLS).
    #[arg(long)]
    url: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
    /// Bearer token (admin.token), if the agent requires one.
    #[arg(long, env = "WSRELAY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Extra CA bundle (PEM) to verify a non-loopback agent.
    #[arg(long)]
    ca: Option<PathBuf>,
}

const EX_CONFIG: u8 = 64;

/// The agent a remote command talks to: its base URL (`--url`, checked, or from the config's
/// listener) and the admin token (`--token`, or the config's `admin.token`). A bad `--url` is
/// reported and gives exit 64.
fn target(
    cli_config: &std::path::Path,
    args: &RemoteArgs,
) -> Result<(String, Option<String>), ExitCode> {
    let base = match &args.url {
        Some(u) => match wsrelay::cli::base_url(u) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("wsrelay: {e}");
                return Err(ExitCode::from(EX_CONFIG));
            }
        },
        None => match Config::load(cli_config) {
            Ok(c) => wsrelay::cli::local_url(&c),
            Err(_) => "https://127.0.0.1:10010".to_owned(),
        },
    };
    let token = args.token.clone().or_else(|| {
        Config::load(cli_config)
            .ok()
            .and_then(|c| c.admin.token.map(|t| t.expose().to_owned()))
    });
    Ok((base, token))
}

async fn remote(
    cli_config: &std::path::Path,
    args: &RemoteArgs,
    path: &str,
    render: fn(&serde_json::Value) -> String,
) -> ExitCode {
    let (base, token) = match target(cli_config, args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match wsrelay::cli::fetch_json(&base, path, token.as_deref(), args.ca.as_deref()).await {
        Ok(v) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsrelay: {}", wsrelay::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// `wsrelay health`: exit 0 when UP; when DOWN, the components that are not UP and their
/// last errors (or the whole document with `--json`), exit 1.
async fn health(cli_config: &std::path::Path, args: &RemoteArgs, path: &str) -> ExitCode {
    let (base, token) = match target(cli_config, args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match wsrelay::cli::fetch(&base, path, token.as_deref(), args.ca.as_deref()).await {
        Ok((status, doc)) if doc.get("status").is_some() => {
            let text = if args.json {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&doc).unwrap_or_default()
                )
            } else {
                wsrelay::cli::render_health(&doc)
            };
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok((status, doc)) => {
            eprintln!(
                "wsrelay: {base}{path}: HTTP {status}: {}",
                doc.get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("(no message)")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wsrelay: {}", wsrelay::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Changes the log filter at run time (`log.level` on SIGHUP); `RUST_LOG`, when set, wins.
type LevelHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging(level: &str, format: LogFormat) -> LevelHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| parse_level(level))
        .unwrap_or_else(|_| quiet_notify(tracing_subscriber::EnvFilter::new("info"), "info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    // The session's span (id, client, service, instance) as `span`.
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init(),
    }
    handle
}

fn set_level(handle: &LevelHandle, level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(());
    }
    let filter = parse_level(level).map_err(|e| e.to_string())?;
    handle.reload(filter).map_err(|e| e.to_string())
}

/// `log.level` as a filter, with [`quiet_notify`] applied.
fn parse_level(
    level: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|f| quiet_notify(f, level))
}

/// notify's inotify backend warns "Unable to remove the path from the watches" on every
/// Kubernetes Secret rotation (the old `..2026_…` directory is gone before its watch is
/// dropped): normal, not a warning. Its warnings are hidden unless `level` names `notify`.
fn quiet_notify(
    filter: tracing_subscriber::EnvFilter,
    level: &str,
) -> tracing_subscriber::EnvFilter {
    if level.contains("notify") {
        return filter;
    }
    match "notify::inotify=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Forwards SIGHUP to `tx` (one pending reload at most).
fn reload_on_sighup(tx: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: config reload by signal is unavailable");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the config");
            let _ = tx.try_send(());
        }
    });
}

fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            #[cfg(unix)]
            {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("signal received: shutting down (a second signal exits at once)");
        token.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "wsrelay", &mut out);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
            return ExitCode::SUCCESS;
        }
        Some(Command::Man) => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
                eprintln!("wsrelay man: {e}");
                return ExitCode::FAILURE;
            }
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let (Some(Command::Demo { .. }), Some(path)) = (&cli.command, &cli.config) {
        eprintln!(
            "wsrelay demo: runs on an embedded default and takes no config, but --config (or WSRELAY_CONFIG) gave {}; run `wsrelay --config {} run` for that config",
            path.display(),
            path.display()
        );
        return ExitCode::from(EX_CONFIG);
    }
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let log_format = |cfg: LogFormat| match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => cfg,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(all(target_os = "linux", not(target_env = "musl")))]
    builder.on_thread_park(tcache::on_park);
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsrelay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(all(target_os = "linux", not(target_env = "musl")))]
    rt.spawn(tcache::tick());
    match &cli.command {
        Some(Command::Sessions {
            closed,
            refused,
            remote: args,
        }) => {
            let (path, render): (&str, fn(&serde_json::Value) -> String) = if *closed {
                (
                    "/application/websockets/closed",
                    wsrelay::cli::render_closed_sessions,
                )
            } else if *refused {
                (
                    "/application/websockets/refused",
                    wsrelay::cli::render_refused,
                )
            } else {
                ("/application/websockets", wsrelay::cli::render_sessions)
            };
            return rt.block_on(remote(&config_path, args, path, render));
        }
        Some(Command::Routes(args)) => {
            return rt.block_on(remote(
                &config_path,
                args,
                "/application/routes",
                wsrelay::cli::render_routes,
            ))
        }
        Some(Command::Health {
            check,
            remote: args,
        }) => {
            let path = match check {
                HealthCheck::Liveness => "/application/health/liveness",
                HealthCheck::Readiness => "/application/health/readiness",
            };
            return rt.block_on(health(&config_path, args, path));
        }
        _ => {}
    }
    if let Some(Command::Demo { listen }) = cli.command {
        let _ = init_logging("info", log_format(LogFormat::Text));
        return rt.block_on(async {
            let token = CancellationToken::new();
            shutdown_on_signals(token.clone());
            match wsrelay::demo::run(listen, token).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wsrelay demo: {}", wsrelay::cli::error_text(&e));
                    ExitCode::FAILURE
                }
            }
        });
    }
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsrelay: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    // RUST_LOG wins over log.level: a filter that would log nothing is refused as log.level is.
    if let Some(env) = std::env::var_os("RUST_LOG") {
        let env = env.to_string_lossy();
        if let Err(e) = wsrelay::config::check_log_filter(&env) {
            eprintln!("wsrelay: environment variable RUST_LOG: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    }
    let level_handle = init_logging(&config.log.level, log_format(config.log.format));
    match cli.command {
        Some(Command::Check { offline, print }) => rt.block_on(check(config, offline, print)),
        _ => rt.block_on(async {
            let token = CancellationToken::new();
            shutdown_on_signals(token.clone());
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            reload_on_sighup(tx);
            match wsrelay::run(config, token, rx, |level| set_level(&level_handle, level)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once, on stderr, whatever log.level says.
                    eprintln!("wsrelay: {}", wsrelay::cli::error_text(&e));
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

async fn check(config: Config, offline: bool, print: bool) -> ExitCode {
    if print {
        let _ =
            std::io::Write::write_all(&mut std::io::stdout(), config.effective_toml().as_bytes());
    }
    let result = if offline {
        wsrelay::check_offline(&config).await
    } else {
        wsrelay::check(&config).await
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsrelay check: {}", wsrelay::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_warnings_are_hidden_unless_asked_for() {
        let f = parse_level("info").unwrap().to_string();
        assert!(f.contains("notify::inotify=error"), "{f}");
        let f = parse_level("debug,notify=debug").unwrap().to_string();
        assert!(!f.contains("notify::inotify=error"), "{f}");
        assert!(parse_level("info,[").is_err());
    }
}
