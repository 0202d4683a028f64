//! Smoke test of the benchmark harness (`wsrelay-bench`): the built binary runs its echo
//! backend, short closed-loop, pipelined and hold loads against it, the report over their
//! JSON lines, and a closed-loop and hold load over wss, and over HTTP/2 (RFC 8441), through a
//! real in-process agent.
//! Counts only, never timings (speed belongs to `bench/run.sh`).

// The main crate's test helpers (the in-process agent and its registry).
#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::{registry_xml, Inst, TestAgent};

const BENCH: &str = env!("CARGO_BIN_EXE_wsrelay-bench");

/// The echo backend as a child process, killed on drop.
struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn start() -> Echo {
        let mut child = Command::new(BENCH)
            .args(["echo", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("echo listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Echo { child, addr }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wsrelay-bench ARGS`, checks it succeeded, and returns its one JSON result line.
fn bench(args: &[&str]) -> (String, serde_json::Value) {
    let out = Command::new(BENCH).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let line = stdout.lines().last().unwrap_or_default().to_string();
    let json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    (line, json)
}

fn u64_of(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn echo_backend_loads_and_report() {
    let echo = Echo::start();
    let url = format!("ws://{}/any/path", echo.addr);
    let pid = echo.pid();
    let common = |mode: &'static str| {
        vec![
            mode.to_string(),
            "--url".into(),
            url.clone(),
            "--target".into(),
            "direct".into(),
            "--load".into(),
            mode.into(),
            "--watch-pid".into(),
            pid.clone(),
        ]
    };

    let mut args = common("closed");
    args.extend(["--connections", "4", "--duration", "1s", "--warmup", "0s"].map(String::from));
    let (closed_line, closed) = bench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(u64_of(&closed, "messages") > 0, "{closed}");
    assert_eq!(u64_of(&closed, "errors"), 0, "{closed}");
    assert_eq!(u64_of(&closed, "bytes"), u64_of(&closed, "messages") * 64);
    assert!(closed["p99_us"].as_f64().is_some(), "{closed}");
    assert!(closed["cpu_s"].as_f64().is_some(), "{closed}");

    let mut args = common("throughput");
    args.extend(
        [
            "--connections",
            "2",
            "--size",
            "4096",
            "--window",
            "4",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
        ]
        .map(String::from),
    );
    let (tp_line, tp) = bench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(u64_of(&tp, "messages") > 0, "{tp}");
    assert_eq!(u64_of(&tp, "errors"), 0, "{tp}");

    let mut args = common("hold");
    args.extend(
        [
            "--sessions",
            "20",
            "--settle",
            "50ms",
            "--after-close",
            "50ms",
        ]
        .map(String::from),
    );
    let (hold_line, hold) = bench(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(u64_of(&hold, "opened"), 20, "{hold}");
    assert_eq!(u64_of(&hold, "echoed"), 20, "{hold}");
    assert!(u64_of(&hold, "rss_open_kib") > 0, "{hold}");
    assert_eq!(u64_of(&hold, "fds_open") - u64_of(&hold, "fds_before"), 20);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("results.jsonl");
    std::fs::write(&file, format!("{closed_line}\n{tp_line}\n{hold_line}\n")).unwrap();
    let out = Command::new(BENCH)
        .arg("report")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("| load | metric | direct |"), "{table}");
    assert!(table.contains("closed-loop echo, 64 B, 4 connections (median of 1) | msgs/s |"));
    assert!(table.contains("| hold 20 idle sessions (median of 1) | sessions still echoing | 20 |"));
}

#[test]
fn bad_target_fails_with_a_message() {
    let out = Command::new(BENCH)
        .args(["closed", "--url", "wss://127.0.0.1:1/", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ca-file or --insecure"), "{err}");
}

/// An agent (wss) routing `DISCOVERABLECLIENT` to `echo`.
async fn agent_to(echo: &Echo) -> TestAgent {
    let registry = registry_xml(&[Inst::new("DISCOVERABLECLIENT", "echo", echo.addr.port())]);
    TestAgent::with_registry_file(&registry, "").await
}

/// The load generator's arguments for `mode` against `agent` as `target`, trusting its
/// certificate and watching this process, with `extra` before `--target`.
fn base_args(mode: &str, agent: &TestAgent, target: &str, extra: &[&str]) -> Vec<String> {
    let url = format!(
        "wss://127.0.0.1:{}/ws/v1/discoverableclient/echo",
        agent.agent.local_addr.port()
    );
    let ca = agent.cert.cert_path().display().to_string();
    let mut v: Vec<String> = [mode, "--url", &url, "--ca-file", &ca]
        .map(String::from)
        .to_vec();
    v.extend(extra.iter().map(|a| a.to_string()));
    v.extend(
        [
            "--target",
            target,
            "--watch-pid",
            &std::process::id().to_string(),
        ]
        .map(String::from),
    );
    v
}

/// Runs the load generator with `args` off the runtime's workers.
async fn run(args: Vec<String>) -> (String, serde_json::Value) {
    tokio::task::spawn_blocking(move || bench(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_through_the_agent() {
    let echo = Echo::start();
    let agent = agent_to(&echo).await;
    let base = |mode: &str| base_args(mode, &agent, "wsrelay-wss", &[]);

    let mut args = base("closed");
    args.extend(["--connections", "2", "--duration", "1s", "--warmup", "0s"].map(String::from));
    let (_, closed) = run(args).await;
    assert!(u64_of(&closed, "messages") > 0, "{closed}");
    assert_eq!(u64_of(&closed, "errors"), 0, "{closed}");

    let (_, hold) = run(hold_10(base("hold"))).await;
    assert_eq!(u64_of(&hold, "echoed"), 10, "{hold}");
    agent.wait_sessions(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_through_the_agent() {
    let echo = Echo::start();
    let agent = agent_to(&echo).await;
    let base = |mode: &str| base_args(mode, &agent, "wsrelay-h2", &["--http2-streams", "4"]);
    let h2_sessions = || agent.agent.shared.metrics.proxy.http2_sessions.get();

    let mut args = base("closed");
    args.extend(["--connections", "3", "--duration", "1s", "--warmup", "0s"].map(String::from));
    let (_, closed) = run(args).await;
    assert!(u64_of(&closed, "messages") > 0, "{closed}");
    assert_eq!(u64_of(&closed, "errors"), 0, "{closed}");
    assert_eq!(h2_sessions(), 3);

    // 10 sessions, 4 streams per connection: three HTTP/2 connections.
    let (_, hold) = run(hold_10(base("hold"))).await;
    assert_eq!(u64_of(&hold, "echoed"), 10, "{hold}");
    assert_eq!(h2_sessions(), 13);
    agent.wait_sessions(0).await;

    // HTTP/2 is offered over TLS only.
    let out = Command::new(BENCH)
        .args([
            "closed",
            "--url",
            "ws://127.0.0.1:1/",
            "--http2-streams",
            "4",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a wss:// URL"), "{err}");
}

/// `args` of a hold of 10 sessions, with short settle times.
fn hold_10(mut args: Vec<String>) -> Vec<String> {
    args.extend(
        [
            "--sessions",
            "10",
            "--settle",
            "50ms",
            "--after-close",
            "200ms",
        ]
        .map(String::from),
    );
    args
}
