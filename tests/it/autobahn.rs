//! RFC 6455 conformance through the relay, with Autobahn|Testsuite (`wstest`).
//!
//! Both directions, each over a plain (`ws`) and a TLS (`wss`) listener, each compared with a
//! direct connection to the same backend:
//!
//! - **client side**: `wstest -m fuzzingclient` → wsrelay → an echo service (the backend);
//! - **service side**: `wstest -m fuzzingserver` registered as the service → wsrelay → an
//!   echoing client driven by this test (the Autobahn client protocol: `getCaseCount`,
//!   `runCase`, `updateReports`).
//!
//! Pass: no case `FAILED` or `WRONG CODE` for any agent, and every relayed result equals the
//! direct result, except the differences listed in [`ALLOWED_DIFFERENCES`] (each with its
//! reason; the README's Security section lists them too). A summary line per agent is printed.
//!
//! permessage-deflate (12.*, 13.*, RFC 7692) is judged against the Python `websockets` library
//! (`tests/autobahn/pmd.py`), which implements it, where the Rust echo backend and testee do
//! not: agents `direct-pmd` (Autobahn ↔ websockets directly), `relay-ws-pmd` and
//! `relay-wss-pmd` (through the relay, deflate on both legs) run only those cases, and
//! `relay-ws`/`relay-wss` run them too against the Rust backend (deflate on the client leg
//! only: the relay inflates and deflates). Every deflate case must be OK on every agent, and
//! each relayed result must equal `direct-pmd`'s. CI runs 12 of the 216 (every payload kind and
//! every parameter set, sizes 16 B to 16 KiB) on `relay-ws` and `relay-wss-pmd` (and the
//! fuzzing server's `relay-wss-pmd`); `WSRELAY_AUTOBAHN_FULL=1` runs all on every agent.
//!
//! The slow 9.* cases (16 MiB messages) and the rest of 12.*/13.* run only with
//! `WSRELAY_AUTOBAHN_FULL=1`.
//!
//! `wstest` comes from `scripts/autobahn/setup.sh` (a Python 2.7 virtualenv under
//! `target/autobahn/venv`, cached); `WSRELAY_WSTEST` overrides the path. Without it the test
//! fails, unless the machine has no CPython 2.7 (the setup script then leaves the reason in
//! `target/autobahn/UNAVAILABLE`) or `WSRELAY_SKIP_AUTOBAHN=1` is set: then it prints a loud
//! SKIPPED line with the reason and checks nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{registry_xml, Inst, TestCert};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Prints a line straight to the process's stderr: the test harness captures `println!` of
/// passing tests, and the summary must show in CI's output.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// Cases where a relayed result may differ from the direct one: (agent prefix, case id,
/// relayed (behavior, behaviorClose), reason). A relayed result must still be free of
/// FAILED and WRONG CODE.
const ALLOWED_DIFFERENCES: &[(&str, &str, (&str, &str), &str)] = &[
    ("relay", "3.2", NON_STRICT, FAIL_FAST),
    ("relay", "3.3", NON_STRICT, FAIL_FAST),
    ("relay", "3.4", NON_STRICT, FAIL_FAST),
    ("relay", "4.1.3", NON_STRICT, FAIL_FAST),
    ("relay", "4.1.4", NON_STRICT, FAIL_FAST),
    ("relay", "4.1.5", NON_STRICT, FAIL_FAST),
    ("relay", "4.2.3", NON_STRICT, FAIL_FAST),
    ("relay", "4.2.4", NON_STRICT, FAIL_FAST),
    ("relay", "4.2.5", NON_STRICT, FAIL_FAST),
    ("relay", "5.15", NON_STRICT, FAIL_FAST),
];

const NON_STRICT: (&str, &str) = ("NON-STRICT", "OK");

/// Why the cases that send a valid message followed by a bad frame may be NON-STRICT.
const FAIL_FAST: &str = "a valid message, then a bad frame: the relay fails the offending \
    leg as soon as it reads the bad frame, which can be before the other side's echo of the \
    valid message has come back through it; Autobahn then misses that echo (NON-STRICT, \
    timing-dependent) where a direct echo, answering in order, is OK";

/// Whether the slow 9.* cases run too (`WSRELAY_AUTOBAHN_FULL=1`, `scripts/autobahn/full.sh`).
fn full() -> bool {
    std::env::var("WSRELAY_AUTOBAHN_FULL").is_ok_and(|v| v == "1")
}

/// Case patterns run in CI (plus 9.* with [`full`]).
fn case_patterns() -> Vec<&'static str> {
    let mut v = vec!["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"];
    if full() {
        v.push("9.*");
    }
    v
}

/// The permessage-deflate cases run: all with [`full`], else one case of each of 12.1–12.5
/// (five payload kinds) and 13.1–13.7 (seven parameter sets), the message size turning
/// through 16 B, 1 KiB, 4 KiB and 16 KiB in 256-byte frames (1,000 messages each; a case takes
/// seconds in a debug build, so CI runs 12).
fn deflate_patterns() -> Vec<String> {
    if full() {
        return vec!["12.*".into(), "13.*".into()];
    }
    let sizes = [1, 4, 5, 12];
    let mut v = Vec::new();
    for (major, subs) in [(12, 5), (13, 7)] {
        for sub in 1..=subs {
            v.push(format!("{major}.{sub}.{}", sizes[(sub - 1) % sizes.len()]));
        }
    }
    v
}

/// Agents that run the deflate cases in CI besides `direct-pmd` (all of them with [`full`]):
/// one with deflate on the client leg only (`relay-ws`, the Rust backend) and one with it on
/// both legs over TLS (`relay-wss-pmd`).
fn deflate_agent_skipped(agent: &str) -> bool {
    !full() && matches!(agent, "relay-wss" | "relay-ws-pmd")
}

fn is_deflate_case(id: &str) -> bool {
    id.starts_with("12.") || id.starts_with("13.")
}

/// The Python with `websockets` that `tests/autobahn/pmd.py` needs (scripts/test.sh installs
/// it); panics with the fix when it is missing.
fn pmd_python() -> Command {
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 cannot import websockets: run scripts/test.sh (or pip install websockets)"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/autobahn/pmd.py"));
    cmd
}

/// The `websockets` echo server (`pmd.py server`): the process and its port.
fn start_pmd_echo() -> (Killed, u16) {
    use std::io::BufRead as _;
    let mut child = pmd_python()
        .arg("server")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pmd.py server printed {line:?}"));
    (Killed(child), port)
}

/// Runs the `websockets` testee (`pmd.py testee`) against a fuzzing server; the case count.
async fn run_pmd_testee(base: &str, agent: &str, ca: Option<&Path>) -> usize {
    let mut cmd = pmd_python();
    cmd.args(["testee", base, agent]);
    if let Some(ca) = ca {
        cmd.arg(ca);
    }
    // Each case ends within 300 s (pmd.py), so the run ends.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{agent}: pmd.py testee failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{agent}: pmd.py testee printed {stdout:?}"))
}

/// The wstest executable, or `None` when it is missing and skipping was asked for.
fn wstest() -> Option<PathBuf> {
    let path = std::env::var_os("WSRELAY_WSTEST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/autobahn/venv/bin/wstest"),
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    let marker = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/autobahn/UNAVAILABLE");
    if let Ok(reason) = std::fs::read_to_string(&marker) {
        say!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        say!("!! AUTOBAHN SKIPPED: {}", reason.trim());
        say!(
            "!! (written by scripts/autobahn/setup.sh to {})",
            marker.display()
        );
        say!("!! RFC 6455 conformance was NOT checked on this machine.");
        say!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        return None;
    }
    if std::env::var("WSRELAY_SKIP_AUTOBAHN").is_ok_and(|v| v == "1") {
        say!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        say!(
            "!! AUTOBAHN SKIPPED: {} not found and WSRELAY_SKIP_AUTOBAHN=1.",
            path.display()
        );
        say!("!! RFC 6455 conformance was NOT checked. Run scripts/autobahn/setup.sh.");
        say!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        return None;
    }
    panic!(
        "wstest not found at {}: run `bash scripts/autobahn/setup.sh` (as .ci/run does), \
         set WSRELAY_WSTEST to its path, or set WSRELAY_SKIP_AUTOBAHN=1 to skip (printed loudly)",
        path.display()
    );
}

/// An echo peer that also ends like a strict endpoint: a protocol violation is answered with
/// 1002, invalid UTF-8 with 1007, an oversized message with 1009 (RFC 6455 §7.4.1).
async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            // Keep reading: tungstenite flushes its close answer and then reports the end.
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                let code = match e {
                    WsError::Utf8(_) => Some(CloseCode::Invalid),
                    WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                        Some(CloseCode::Size)
                    }
                    WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
                    WsError::Protocol(_) => Some(CloseCode::Protocol),
                    _ => None,
                };
                if let Some(code) = code {
                    let _ = ws
                        .close(Some(CloseFrame {
                            code,
                            reason: "".into(),
                        }))
                        .await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
                break;
            }
            None => break,
        }
    }
}

/// The echo backend for the fuzzing client: a plain WebSocket server on 127.0.0.1.
async fn start_echo(token: CancellationToken) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = token.cancelled() => break,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    echo(ws).await;
                }
            });
        }
    });
    port
}

/// A running relay: plain or TLS listener, routes from a registry file.
struct Relay {
    agent: wsrelay::Agent,
    token: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn start_relay(registry: &str, tls: Option<&TestCert>, upstream_ca: Option<&Path>) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.xml");
    std::fs::write(&reg, registry).unwrap();
    let tls_section = match tls {
        Some(c) => format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            c.cert_path().display().to_string(),
            c.key_path().display().to_string()
        ),
        None => "[tls]\nenabled = false\n".to_owned(),
    };
    let ca = upstream_ca.map_or(String::new(), |p| {
        format!("ca_file = {:?}\n", p.display().to_string())
    });
    // A fuzzing server answers `updateReports` only once its reports are written, which can take
    // many seconds on a loaded machine: hence the long upstream handshake timeout.
    let toml = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n{tls_section}[registry]\nfile = {:?}\nrefresh_interval = \"1h\"\n[upstream]\nconnect_timeout = \"5s\"\nhandshake_timeout = \"60s\"\n{ca}[limits]\nclose_timeout = \"3s\"\n[log]\nlevel = \"warn\"\n",
        reg.display().to_string()
    );
    let config = wsrelay::config::Config::from_toml(&toml, None).unwrap();
    let token = CancellationToken::new();
    let agent = wsrelay::start(config, token.clone()).await.unwrap();
    Relay {
        agent,
        token,
        _dir: dir,
    }
}

fn instance(app: &'static str, port: u16, secure: bool) -> Inst {
    let mut i = Inst::new(app, &format!("{}-1", app.to_ascii_lowercase()), port);
    i.secure = secure;
    i.routes = vec![("ws", "ws/v1", "/")];
    i
}

/// One case result from Autobahn's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CaseResult {
    behavior: String,
    behavior_close: String,
}

/// agent → case id → result.
type Results = BTreeMap<String, BTreeMap<String, CaseResult>>;

fn read_index(outdir: &Path) -> Results {
    let text = std::fs::read_to_string(outdir.join("index.json"))
        .unwrap_or_else(|e| panic!("no Autobahn report in {}: {e}", outdir.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Results::new();
    for (agent, cases) in v.as_object().unwrap() {
        let m = out.entry(agent.clone()).or_default();
        for (case, r) in cases.as_object().unwrap() {
            m.insert(
                case.clone(),
                CaseResult {
                    behavior: r["behavior"].as_str().unwrap_or("?").to_owned(),
                    behavior_close: r["behaviorClose"].as_str().unwrap_or("?").to_owned(),
                },
            );
        }
    }
    out
}

/// Numeric order of case ids ("1.2.10" after "1.2.9").
fn case_key(id: &str) -> Vec<u32> {
    id.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Prints the summary and returns the problems: FAILED / WRONG CODE anywhere, and relayed
/// results that differ from the direct ones without an entry in [`ALLOWED_DIFFERENCES`].
/// The problems in `results`: FAILED or WRONG CODE anywhere, a deflate case not OK, a count
/// other than `expected(agent)`, and relayed results unlike the direct ones (`direct-pmd` for
/// deflate cases, `direct` for the others) beyond [`ALLOWED_DIFFERENCES`].
fn judge(direction: &str, results: &Results, expected: impl Fn(&str) -> usize) -> Vec<String> {
    let mut problems = Vec::new();
    for (agent, cases) in results {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in cases.values() {
            *counts.entry(r.behavior.as_str()).or_default() += 1;
        }
        let wrong_code = cases
            .values()
            .filter(|r| r.behavior_close == "WRONG CODE")
            .count();
        let close_failed = cases
            .values()
            .filter(|r| r.behavior_close == "FAILED")
            .count();
        say!(
            "autobahn {direction}: {agent}: {} cases: {} OK, {} NON-STRICT, {} INFORMATIONAL, {} UNIMPLEMENTED, {} FAILED, {} WRONG CODE (close FAILED: {close_failed})",
            cases.len(),
            counts.get("OK").copied().unwrap_or(0),
            counts.get("NON-STRICT").copied().unwrap_or(0),
            counts.get("INFORMATIONAL").copied().unwrap_or(0),
            counts.get("UNIMPLEMENTED").copied().unwrap_or(0),
            counts.get("FAILED").copied().unwrap_or(0),
            counts.get("WRONG CODE").copied().unwrap_or(0) + wrong_code,
        );
        let expected_cases = expected(agent);
        if cases.len() != expected_cases {
            problems.push(format!(
                "{direction} {agent}: {} results, expected {expected_cases}",
                cases.len()
            ));
        }
        let mut documented: Vec<&str> = Vec::new();
        let mut ids: Vec<&String> = cases.keys().collect();
        ids.sort_by_key(|id| case_key(id));
        for id in ids {
            let r = &cases[id];
            if r.behavior == "FAILED"
                || r.behavior == "WRONG CODE"
                || r.behavior_close == "FAILED"
                || r.behavior_close == "WRONG CODE"
            {
                problems.push(format!(
                    "{direction} {agent} case {id}: {} / close {}",
                    r.behavior, r.behavior_close
                ));
            }
            if is_deflate_case(id) && (r.behavior != "OK" || r.behavior_close != "OK") {
                problems.push(format!(
                    "{direction} {agent} case {id}: permessage-deflate should be OK, got {} / close {}",
                    r.behavior, r.behavior_close
                ));
            }
            let base = if is_deflate_case(id) {
                "direct-pmd"
            } else {
                "direct"
            };
            if agent == base {
                continue;
            }
            let Some(d) = results.get(base).and_then(|m| m.get(id)) else {
                problems.push(format!("{direction} {agent} case {id}: no {base} result"));
                continue;
            };
            if d != r {
                let allowed = ALLOWED_DIFFERENCES.iter().find(|(a, c, (b, bc), _)| {
                    agent.starts_with(a)
                        && id.as_str() == *c
                        && r.behavior == *b
                        && r.behavior_close == *bc
                });
                let line = format!(
                    "{direction} {agent} case {id}: relayed {} / close {}, direct {} / close {}",
                    r.behavior, r.behavior_close, d.behavior, d.behavior_close
                );
                if allowed.is_some() {
                    documented.push(id.as_str());
                } else {
                    problems.push(format!("undocumented difference: {line}"));
                }
            }
        }
        if !documented.is_empty() {
            say!(
                "autobahn {direction}: {agent}: NON-STRICT where direct is OK (documented, fail fast): {}",
                documented.join(" ")
            );
        }
    }
    problems
}

/// Runs `wstest` to completion (bounded), printing its output on failure.
async fn run_wstest(mut cmd: Command, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "wstest did not finish within {limit:?}; its output:\n{}",
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A child process killed on drop (the fuzzing server runs until told to stop).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzingclient_through_the_relay_ws_and_wss() {
    let Some(wstest) = wstest() else { return };
    let token = CancellationToken::new();
    let echo_port = start_echo(token.clone()).await;
    let (_pmd, pmd_port) = start_pmd_echo();
    let registry = registry_xml(&[
        instance("ECHO", echo_port, false),
        instance("PMDECHO", pmd_port, false),
    ]);
    let cert = TestCert::new();
    let plain = start_relay(&registry, None, None).await;
    let tls = start_relay(&registry, Some(&cert), None).await;

    let work = tempfile::tempdir().unwrap();
    let outdir = work.path().join("reports");
    let servers: Vec<serde_json::Value> = vec![
            serde_json::json!({"agent": "direct", "url": format!("ws://127.0.0.1:{echo_port}/echo")}),
            serde_json::json!({"agent": "relay-ws", "url": format!("ws://127.0.0.1:{}/echo/ws/v1/echo", plain.agent.local_addr.port())}),
            serde_json::json!({"agent": "relay-wss", "url": format!("wss://127.0.0.1:{}/echo/ws/v1/echo", tls.agent.local_addr.port())}),
            serde_json::json!({"agent": "direct-pmd", "url": format!("ws://127.0.0.1:{pmd_port}/echo")}),
            serde_json::json!({"agent": "relay-ws-pmd", "url": format!("ws://127.0.0.1:{}/pmdecho/ws/v1/echo", plain.agent.local_addr.port())}),
            serde_json::json!({"agent": "relay-wss-pmd", "url": format!("wss://127.0.0.1:{}/pmdecho/ws/v1/echo", tls.agent.local_addr.port())}),
        ]
    .into_iter()
    // A websockets-backed agent skipped in CI would run no case at all: left out.
    .filter(|s| {
        let agent = s["agent"].as_str().unwrap_or("");
        !(agent.ends_with("-pmd") && deflate_agent_skipped(agent))
    })
    .collect();
    let spec = serde_json::json!({
        "outdir": outdir,
        "servers": servers,
        "cases": case_patterns().into_iter().map(String::from).chain(deflate_patterns()).collect::<Vec<_>>(),
        "exclude-cases": [],
        // The Rust echo has no deflate; the websockets echo runs the deflate cases only.
        "exclude-agent-cases": deflate_exclusions(),
    });
    let spec_path = work.path().join("fuzzingclient.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let log = work.path().join("wstest.log");
    let mut cmd = Command::new(&wstest);
    cmd.args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(work.path());
    let started = Instant::now();
    let limit = Duration::from_secs(if full() { 7200 } else { 1200 });
    let status = run_wstest(cmd, limit, &log).await;
    assert!(
        status.success(),
        "wstest failed ({status}):\n{}",
        tail(&log)
    );
    let results = read_index(&outdir);
    let n = results.get("direct").map_or(0, BTreeMap::len);
    let n_pmd = results.get("direct-pmd").map_or(0, BTreeMap::len);
    say!(
        "autobahn fuzzingclient: {n} cases + {n_pmd} permessage-deflate cases per agent in {:.0?}",
        started.elapsed()
    );
    assert!(n > 200, "too few cases ran: {n}\n{}", tail(&log));
    assert_eq!(n_pmd, deflate_case_count(), "{}", tail(&log));
    let problems = judge("fuzzingclient", &results, |agent| match agent {
        "direct" => n,
        "relay-wss" if deflate_agent_skipped(agent) => n,
        a if a.ends_with("-pmd") => n_pmd,
        _ => n + n_pmd,
    });
    assert!(
        problems.is_empty(),
        "Autobahn (client side) problems (reports in {}):\n{}",
        work.keep().display(),
        problems.join("\n")
    );
    assert_eq!(plain.agent.live_sessions(), 0);
    token.cancel();
}

/// Which agents skip which cases in the fuzzing client run: the Rust echo has no deflate, the
/// websockets echo runs the deflate cases only, and CI skips the deflate cases on some agents
/// ([`deflate_agent_skipped`]).
fn deflate_exclusions() -> serde_json::Value {
    let mut ex = serde_json::json!({"direct": deflate_patterns(), "*-pmd": case_patterns()});
    if deflate_agent_skipped("relay-wss") {
        ex["relay-wss"] = serde_json::json!(deflate_patterns());
    }
    ex
}

/// How many deflate cases [`deflate_patterns`] selects (216 in all).
fn deflate_case_count() -> usize {
    if full() {
        216
    } else {
        deflate_patterns().len()
    }
}

/// Connects a testee WebSocket client to `url` (TLS with `tls`).
async fn testee_connect(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, WsError> {
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        tls.map(Connector::Rustls),
    )
    .await?;
    Ok(ws)
}

/// Drives the Autobahn client protocol against `base` (a fuzzing server, direct or through the
/// relay) as `agent`: every case with an echoing client, then `updateReports`.
async fn run_testee(base: &str, agent: &str, tls: Option<Arc<rustls::ClientConfig>>) -> usize {
    let mut ws = testee_connect(&format!("{base}/getCaseCount"), tls.clone())
        .await
        .unwrap_or_else(|e| panic!("{agent}: getCaseCount: {e}"));
    let count: usize = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t.trim().parse().unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("{agent}: getCaseCount answered {other:?}"),
        }
    };
    while let Some(Ok(_)) = ws.next().await {}
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match testee_connect(&url, tls.clone()).await {
            Ok(ws) => {
                if tokio::time::timeout(Duration::from_secs(300), echo(ws))
                    .await
                    .is_err()
                {
                    panic!("{agent}: case {case} did not end within 300 s");
                }
            }
            Err(e) => panic!("{agent}: case {case}: cannot connect: {e}"),
        }
    }
    let mut ws = testee_connect(&format!("{base}/updateReports?agent={agent}"), tls.clone())
        .await
        .unwrap_or_else(|e| panic!("{agent}: updateReports: {e}"));
    while let Some(Ok(_)) = ws.next().await {}
    count
}

/// A running `wstest -m fuzzingserver` on 127.0.0.1 (`wss` with `tls` = (cert, key)).
struct FuzzingServer {
    _child: Killed,
    port: u16,
    outdir: PathBuf,
    log: PathBuf,
}

async fn start_fuzzingserver(
    wstest: &Path,
    work: &Path,
    name: &str,
    tls: Option<(&Path, &Path)>,
    cases: Vec<String>,
) -> FuzzingServer {
    let outdir = work.join(format!("reports-{name}"));
    let port = free_port();
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let mut spec = serde_json::json!({
        "url": format!("{scheme}://127.0.0.1:{port}"),
        "outdir": outdir,
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    if let Some((cert, key)) = tls {
        spec["cert"] = serde_json::json!(cert);
        spec["key"] = serde_json::json!(key);
    }
    let spec_path = work.join(format!("fuzzingserver-{name}.json"));
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let log = work.join(format!("wstest-{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Killed(
        Command::new(wstest)
            .args(["-m", "fuzzingserver", "-u", "0", "-s"])
            .arg(&spec_path)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the fuzzing server did not start:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    FuzzingServer {
        _child: child,
        port,
        outdir,
        log,
    }
}

/// Reads a fuzzing server's report once it has results for `agents` agents.
async fn server_results(server: &FuzzingServer, agents: usize) -> Results {
    // updateReports writes index.json; give the server a moment if it is still writing.
    let mut results = Results::new();
    for _ in 0..100 {
        if server.outdir.join("index.json").is_file() {
            results = read_index(&server.outdir);
            if results.len() == agents {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    results
}

/// Service side: `wstest -m fuzzingserver` as the registered service, the testee client here.
/// Agents: `direct` (testee → fuzzing server), `relay-ws` (ws listener, ws service),
/// `relay-wss` (TLS listener, ws service) and `relay-wss-wss` (TLS on both legs: the service
/// is a second fuzzing server with TLS, verified against `upstream.ca_file`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzingserver_through_the_relay_ws_and_wss() {
    let Some(wstest) = wstest() else { return };
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let svc_cert = TestCert::new();
    let (svc_cert_path, svc_key_path) = (svc_cert.cert_path(), svc_cert.key_path());
    let plain_cases = || case_patterns().into_iter().map(String::from).collect();
    let (plain_srv, tls_srv, pmd_srv) = tokio::join!(
        start_fuzzingserver(&wstest, work.path(), "ws", None, plain_cases()),
        start_fuzzingserver(
            &wstest,
            work.path(),
            "wss",
            Some((&svc_cert_path, &svc_key_path)),
            plain_cases()
        ),
        start_fuzzingserver(&wstest, work.path(), "pmd", None, deflate_patterns()),
    );
    let registry = registry_xml(&[
        instance("AUTOBAHN", plain_srv.port, false),
        instance("AUTOBAHNTLS", tls_srv.port, true),
        instance("AUTOBAHNPMD", pmd_srv.port, false),
    ]);
    let cert = TestCert::new();
    let plain = start_relay(&registry, None, None).await;
    let tls = start_relay(&registry, Some(&cert), Some(&svc_cert.cert_path())).await;
    let relay_ws = format!("ws://127.0.0.1:{}", plain.agent.local_addr.port());
    let relay_wss = format!("wss://localhost:{}", tls.agent.local_addr.port());

    let n = run_testee(
        &format!("ws://127.0.0.1:{}", plain_srv.port),
        "direct",
        None,
    )
    .await;
    let n_ws = run_testee(&format!("{relay_ws}/autobahn/ws/v1"), "relay-ws", None).await;
    let n_wss = run_testee(
        &format!("{relay_wss}/autobahn/ws/v1"),
        "relay-wss",
        Some(cert.client_config()),
    )
    .await;
    let n_wss_wss = run_testee(
        &format!("{relay_wss}/autobahntls/ws/v1"),
        "relay-wss-wss",
        Some(cert.client_config()),
    )
    .await;
    assert_eq!((n_ws, n_wss, n_wss_wss), (n, n, n));
    // permessage-deflate: the websockets testee, directly and through the relay (deflate on
    // both legs).
    let ca = cert.cert_path();
    let n_pmd = run_pmd_testee(
        &format!("ws://127.0.0.1:{}", pmd_srv.port),
        "direct-pmd",
        None,
    )
    .await;
    let n_pmd_ws = if deflate_agent_skipped("relay-ws-pmd") {
        n_pmd
    } else {
        run_pmd_testee(
            &format!("{relay_ws}/autobahnpmd/ws/v1"),
            "relay-ws-pmd",
            None,
        )
        .await
    };
    let n_pmd_wss = run_pmd_testee(
        &format!("{relay_wss}/autobahnpmd/ws/v1"),
        "relay-wss-pmd",
        Some(&ca),
    )
    .await;
    assert_eq!(
        (n_pmd, n_pmd_ws, n_pmd_wss),
        (deflate_case_count(), n_pmd, n_pmd)
    );
    say!(
        "autobahn fuzzingserver: {n} cases + {n_pmd} permessage-deflate cases per agent in {:.0?}",
        started.elapsed()
    );
    let mut results = server_results(&plain_srv, 3).await;
    results.extend(server_results(&tls_srv, 1).await);
    let pmd_agents = if deflate_agent_skipped("relay-ws-pmd") {
        2
    } else {
        3
    };
    results.extend(server_results(&pmd_srv, pmd_agents).await);
    assert!(n > 200, "too few cases: {n}");
    let problems = judge("fuzzingserver", &results, |agent| {
        if agent.ends_with("-pmd") {
            n_pmd
        } else {
            n
        }
    });
    assert!(
        problems.is_empty(),
        "Autobahn (service side) problems (reports in {}):\n{}\n{}\n{}",
        work.keep().display(),
        problems.join("\n"),
        tail(&plain_srv.log),
        tail(&tls_srv.log)
    );
    drop(pmd_srv);
    assert_eq!(plain.agent.live_sessions(), 0);
    assert_eq!(tls.agent.live_sessions(), 0);
}
