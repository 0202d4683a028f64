//! Operations: diagnostics endpoints, metrics, access control, drain, signals, sd_notify and
//! session log lines — in-process agents and the real binary as a subprocess.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn sessions(agent: &TestAgent) -> Vec<serde_json::Value> {
    let (status, _, body) = agent.get("/application/websockets", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn wait_listed(agent: &TestAgent, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..750 {
        let s = sessions(agent).await;
        if s.len() == n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sessions endpoint never listed {n} sessions");
}

#[tokio::test]
async fn sessions_endpoint_lists_exactly_the_open_sessions_and_drops_each_ending() {
    let (svc, agent) = TestAgent::with_echo_service("").await;
    let port = agent.agent.local_addr.port();
    assert!(sessions(&agent).await.is_empty());

    let mut a = agent
        .connect("/ws/v1/discoverableclient/a?q=1", &[])
        .await
        .unwrap()
        .0;
    let mut b = agent
        .connect("/discoverableclient/ws/v1/b", &[])
        .await
        .unwrap()
        .0;
    let c = agent
        .connect("/ws/v1/discoverableclient/c", &[])
        .await
        .unwrap()
        .0;
    a.send(Message::text("12345")).await.unwrap();
    a.next().await.unwrap().unwrap();
    let list = wait_listed(&agent, 3).await;
    let first = list
        .iter()
        .find(|s| {
            s["gatewayPath"] == format!("wss://localhost:{port}/ws/v1/discoverableclient/a?q=1")
        })
        .unwrap();
    for key in [
        "sessionId",
        "clientAddress",
        "gatewayPath",
        "serviceUrl",
        "serviceSessionId",
        "serviceId",
        "instanceId",
        "route",
        "subprotocol",
        "startedAt",
        "messagesIn",
        "messagesOut",
        "bytesIn",
        "bytesOut",
    ] {
        assert!(first.get(key).is_some(), "missing {key}: {first}");
    }
    assert_eq!(
        first["serviceUrl"],
        format!("ws://127.0.0.1:{}/discoverableclient/ws/a?q=1", svc.port())
    );
    assert_eq!(first["route"], "ws_v1");
    assert_eq!(
        (first["messagesIn"].as_u64(), first["bytesIn"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(
        (first["messagesOut"].as_u64(), first["bytesOut"].as_u64()),
        (Some(1), Some(5))
    );
    assert!(first["clientAddress"]
        .as_str()
        .unwrap()
        .starts_with("/127.0.0.1:"));
    assert!(humantime::parse_rfc3339(first["startedAt"].as_str().unwrap()).is_ok());

    // Client close.
    a.close(None).await.unwrap();
    let list = wait_listed(&agent, 2).await;
    assert!(list.iter().all(|s| !s["gatewayPath"]
        .as_str()
        .unwrap()
        .contains("/discoverableclient/a")));
    // Service close.
    b.send(Message::text("close:1000:done")).await.unwrap();
    read_close(&mut b).await;
    let list = wait_listed(&agent, 1).await;
    assert_eq!(
        list[0]["gatewayPath"],
        format!("wss://localhost:{port}/ws/v1/discoverableclient/c")
    );
    // Error: the client vanishes without a close frame.
    drop(c);
    wait_listed(&agent, 0).await;

    // Shutdown: a live session is closed with 1001 and leaves the table.
    let mut d = agent
        .connect("/ws/v1/discoverableclient/d", &[])
        .await
        .unwrap()
        .0;
    wait_listed(&agent, 1).await;
    let closes_before = svc.closes.lock().unwrap().len();
    agent.agent.shutdown();
    assert_eq!(read_close(&mut d).await.map(|c| c.0), Some(1001));
    agent.wait_sessions(0).await;
    let service_saw = svc.closes.lock().unwrap()[closes_before..].to_vec();
    assert_eq!(
        service_saw,
        vec![Some((1001, "gateway shutting down".to_string()))]
    );
}

#[tokio::test]
async fn health_turns_503_during_the_drain_and_upgrades_are_refused() {
    let (_svc, agent) = TestAgent::with_echo_service("[limits]\nclose_timeout = \"3s\"\n").await;
    assert_eq!(agent.get("/application/health", "").await.0, 200);
    assert_eq!(agent.get("/application/health/readiness", "").await.0, 200);
    // A client that never reads: its close handshake keeps the drain going.
    let stuck = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap()
        .0;
    agent.wait_sessions(1).await;
    agent.agent.shutdown();
    let (status, _, body) = agent.get("/application/health", "").await;
    assert_eq!(status, 503, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["status"], "DOWN");
    assert_eq!(doc["components"]["listener"]["details"]["draining"], true);
    assert_eq!(agent.get("/application/health/liveness", "").await.0, 200);
    let (status, _) = refused(
        agent
            .connect("/ws/v1/discoverableclient/x", &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 503);
    assert!(agent.agent.drained(Duration::from_secs(10)).await);
    drop(stuck);
}

#[tokio::test]
async fn admin_access_is_limited_to_allowed_networks_and_the_token() {
    let agent =
        TestAgent::with_registry_file(&registry_xml(&[]), "[admin]\nallow = [\"10.0.0.0/8\"]\n")
            .await;
    let (status, _, body) = agent.get("/application/websockets", "").await;
    assert_eq!(status, 403, "{body}");

    let agent =
        TestAgent::with_registry_file(&registry_xml(&[]), "[admin]\ntoken = \"t0ken\"\n").await;
    let (status, head, _) = agent.get("/application/health", "").await;
    assert_eq!(status, 401);
    assert!(head
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    assert_eq!(
        agent
            .get("/application/health", "Authorization: Bearer wrong\r\n")
            .await
            .0,
        401
    );
    assert_eq!(
        agent
            .get("/application/health", "Authorization: Bearer t0ken\r\n")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn prometheus_output_parses_and_counts_the_traffic() {
    let (_svc, agent) = TestAgent::with_echo_service("").await;
    for _ in 0..2 {
        let _ = agent.connect("/ws/v1/nosuch/x", &[]).await.unwrap_err();
    }
    let mut ws = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap()
        .0;
    for i in 0..10 {
        ws.send(Message::binary(vec![i as u8; 100])).await.unwrap();
        ws.next().await.unwrap().unwrap();
    }
    // Counters are current while the session is still open.
    let (status, head, body) = agent.get("/application/prometheus", "").await;
    assert_eq!(status, 200);
    // The classic text format unless OpenMetrics is asked for (a browser shows it, as Spring
    // Boot's endpoint does), with the counters' types under their `_total` names.
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        body.contains("# TYPE wsrelay_relayed_bytes_total counter"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    assert!(body.contains(&format!(
        "wsrelay_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    )));
    // Actuator's discovery page links every endpoint.
    let (status, links) = agent.get_json("/application").await;
    assert_eq!(status, 200);
    for (name, path) in [
        ("self", "/application"),
        ("health", "/application/health"),
        ("health-readiness", "/application/health/readiness"),
        ("prometheus", "/application/prometheus"),
        ("websockets", "/application/websockets"),
        ("routes", "/application/routes"),
        ("info", "/application/info"),
    ] {
        assert_eq!(
            links["_links"][name]["href"],
            format!("https://localhost{path}"),
            "{links}"
        );
    }
    let (_, om_head, om_body) = agent
        .get(
            "/application/prometheus",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
        )
        .await;
    assert!(
        om_head.contains("application/openmetrics-text"),
        "{om_head}"
    );
    assert!(om_body.ends_with("# EOF\n"));
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value(
            "wsrelay_relayed_bytes_total",
            Some(("direction", "client_to_service"))
        ),
        1000.0,
        "{body}"
    );
    assert_eq!(
        value(
            "wsrelay_relayed_bytes_total",
            Some(("direction", "service_to_client"))
        ),
        1000.0
    );
    assert_eq!(
        value(
            "wsrelay_relayed_messages_total",
            Some(("direction", "client_to_service"))
        ),
        10.0
    );
    assert_eq!(
        value("wsrelay_handshake_failures_total", Some(("status", "404"))),
        2.0
    );
    assert_eq!(
        value(
            "wsrelay_sessions_open",
            Some(("service", "DISCOVERABLECLIENT"))
        ),
        1.0
    );
    assert!(value("wsrelay_registry_last_success_timestamp_seconds", None) > 1.7e9);
    assert!(value("wsrelay_tls_cert_expiry_timestamp_seconds", None) > 1.7e9);

    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1000u16.into(),
        reason: "".into(),
    }))
    .await
    .unwrap();
    read_close(&mut ws).await;
    agent.wait_sessions(0).await;
    let (_, _, body) = agent.get("/application/prometheus", "").await;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let ended: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "wsrelay_sessions_total" && s.labels.get("close_code") == Some("1000")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(ended, 1.0, "{body}");
}

/// A loopback port nothing listens on (bound to port 0, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary, with a config in a temp dir.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    cert: TestCert,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(registry: &str, envs: &[(&str, String)]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry.xml");
        std::fs::write(&reg, registry).unwrap();
        let section = format!("[registry]\nfile = {:?}\n", reg.display().to_string());
        Self::start_in(dir, &section, envs)
    }

    /// The binary with `registry_section` (a whole `[registry]` table) and a config in `dir`.
    fn start_in(dir: tempfile::TempDir, registry_section: &str, envs: &[(&str, String)]) -> Proc {
        let cert = TestCert::new();
        let cfg = dir.path().join("wsrelay.toml");
        std::fs::write(
            &cfg,
            format!(
                "[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n{registry_section}[shutdown]\ngrace = \"5s\"\n[log]\nformat = \"json\"\n",
                cert.cert_path().display().to_string(),
                cert.key_path().display().to_string(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsrelay"));
        cmd.arg("--config")
            .arg(&cfg)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .env_remove("RUST_LOG");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        Proc {
            child,
            lines,
            _dir: dir,
            cert,
        }
    }

    async fn wait_line(&self, what: &str) -> serde_json::Value {
        for _ in 0..1500 {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(what)) {
                return serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no log line with {what:?}; got {:?}",
            self.lines.lock().unwrap()
        );
    }

    /// How many log lines so far contain `what`.
    fn count_lines(&self, what: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }

    async fn port(&self) -> u16 {
        let l = self.wait_line("\"listening\"").await;
        let addr: std::net::SocketAddr = l["fields"]["address"].as_str().unwrap().parse().unwrap();
        addr.port()
    }

    fn term(&self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit without blocking the test's runtime (the test services
    /// run on it and must keep answering during the drain).
    async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the process did not exit within {limit:?}");
    }
}

async fn connect_proc(
    p: &Proc,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{port}{path}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(p.cert.client_config())),
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn sigterm_drains_with_1001_on_both_legs_and_exits_0_and_logs_carry_no_credentials() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let mut p = Proc::start(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        &[],
    );
    let port = p.port().await;

    // One full session with credentials, for the log lines.
    let secret_auth = "Basic c2VjcmV0dXNlcjpzZWNyZXRwYXNz";
    let secret_cookie = "apimlAuthenticationToken=SECRETCOOKIEVALUE";
    let mut ws = connect_proc(
        &p,
        port,
        "/ws/v1/discoverableclient/log",
        &[("authorization", secret_auth), ("cookie", secret_cookie)],
    )
    .await;
    ws.send(Message::text("hello")).await.unwrap();
    ws.next().await.unwrap().unwrap();
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4000u16.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let closed = p.wait_line("\"session closed\"").await;
    let f = &closed["fields"];
    // Who the session is: its span, on every line it logs.
    let span = &closed["span"];
    assert_eq!(span["name"], "session");
    assert_eq!(span["service"], "DISCOVERABLECLIENT");
    assert_eq!(span["instance"], "dc-1");
    assert_eq!(
        f["upstream"],
        format!("ws://127.0.0.1:{}/discoverableclient/ws/log", svc.port())
    );
    assert_eq!(
        (f["messages_in"].as_u64(), f["bytes_in"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(
        (f["messages_out"].as_u64(), f["bytes_out"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(f["close_code"], 4000);
    assert_eq!(f["close_reason"], "bye");
    assert_eq!(f["closed_by"], "client");
    assert!(f["duration_ms"].is_u64());
    assert!(span["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let opened = p.wait_line("\"session opened\"").await;
    assert_eq!(opened["span"]["session"], span["session"]);
    assert_eq!(span["session"].as_str().map(str::len), Some(16));
    // A refused handshake gets one line with status and cause.
    let _ = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://localhost:{port}/ws/v1/nosuch/x"),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(p.cert.client_config())),
    )
    .await
    .unwrap_err();
    let refused_line = p.wait_line("\"handshake refused\"").await;
    assert_eq!(refused_line["fields"]["status"], 404);

    // SIGTERM with a live session: both legs get 1001, the process exits 0.
    let mut live = connect_proc(&p, port, "/ws/v1/discoverableclient/live", &[]).await;
    live.send(Message::text("x")).await.unwrap();
    live.next().await.unwrap().unwrap();
    let closes_before = svc.closes.lock().unwrap().len();
    p.term();
    assert_eq!(read_close(&mut live).await.map(|c| c.0), Some(1001));
    assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(0));
    let service_saw = svc.closes.lock().unwrap()[closes_before..].to_vec();
    assert_eq!(
        service_saw.first().cloned().flatten().map(|c| c.0),
        Some(1001),
        "{service_saw:?} {:#?}",
        p.lines.lock().unwrap()
    );

    let all = p.lines.lock().unwrap().join("\n");
    for secret in [
        "c2VjcmV0dXNlcjpzZWNyZXRwYXNz",
        "SECRETCOOKIEVALUE",
        "PRIVATE KEY",
    ] {
        assert!(!all.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test]
async fn sd_notify_ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let svc = TestService::start(ServiceOptions::default()).await;
    let mut p = Proc::start(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        &[
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "200000".to_string()),
        ],
    );
    let mut seen = Vec::new();
    wait_for(&sock, &mut seen, "READY=1").await;
    wait_for(&sock, &mut seen, "WATCHDOG=1").await;
    p.term();
    wait_for(&sock, &mut seen, "STOPPING=1").await;
    assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(0));
}

async fn wait_for(sock: &tokio::net::UnixDatagram, seen: &mut Vec<String>, want: &str) {
    let mut buf = vec![0u8; 512];
    while !seen.iter().any(|m| m.contains(want)) {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want} on NOTIFY_SOCKET; got {seen:?}"))
            .unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sessions_routes_and_health_read_a_running_agent() {
    let (svc, agent) = TestAgent::with_echo_service("").await;
    let mut ws = agent
        .connect("/ws/v1/discoverableclient/cli", &[])
        .await
        .unwrap()
        .0;
    ws.send(Message::text("x")).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let url = format!("https://127.0.0.1:{}", agent.agent.local_addr.port());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wsrelay"))
            .args(args)
            .args(["--url", &url, "--config", "/nonexistent/wsrelay.toml"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| run(&["sessions"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("DISCOVERABLECLIENT") && out.contains("/ws/v1/discoverableclient/cli"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("1 live session"), "{out}");
    let (code, out, _) = tokio::task::block_in_place(|| run(&["routes"]));
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!("ws://127.0.0.1:{}", svc.port())),
        "{out}"
    );
    let (code, out, _) = tokio::task::block_in_place(|| run(&["sessions", "--json"]));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["instanceId"], "dc-1");
    let (code, _, _) = tokio::task::block_in_place(|| run(&["health", "readiness"]));
    assert_eq!(code, Some(0));
    agent.agent.shutdown();
    let (code, out, err) = tokio::task::block_in_place(|| run(&["health", "readiness"]));
    assert_eq!(code, Some(1), "{out} {err}");
}

/// Issue 14 item 6: close codes a peer chooses do not mint metric series: 4xxx and 3xxx are
/// bucketed, registered codes keep their number.
#[tokio::test]
async fn peer_chosen_close_codes_are_bucketed_in_the_session_metric() {
    let (_svc, agent) = TestAgent::with_echo_service("").await;
    for code in [4321u16, 4999, 3007, 1000] {
        let (mut ws, _) = agent
            .connect("/ws/v1/discoverableclient/x", &[])
            .await
            .unwrap();
        ws.send(Message::text(format!("close:{code}:bye")))
            .await
            .unwrap();
        let (got, _) = crate::support::read_close(&mut ws).await.unwrap();
        assert_eq!(got, code);
    }
    agent.wait_sessions(0).await;
    let (_, _, body) = agent.get("/application/prometheus", "").await;
    let series = |code: &str| {
        format!("wsrelay_sessions_total{{service=\"DISCOVERABLECLIENT\",close_code=\"{code}\"}}")
    };
    assert!(body.contains(&format!("{} 2", series("4xxx"))), "{body}");
    assert!(body.contains(&format!("{} 1", series("3xxx"))), "{body}");
    assert!(body.contains(&format!("{} 1", series("1000"))), "{body}");
    assert!(!body.contains("close_code=\"4321\""), "{body}");
}

/// Issue 14 item 11: "trying the next instance" is logged only when a next instance exists;
/// the last attempt's cause is in the one "handshake failed" line.
#[tokio::test]
async fn a_failed_last_upstream_attempt_does_not_promise_a_next_instance() {
    let registry = registry_xml(&[
        Inst::new("DISCOVERABLECLIENT", "dc-1", closed_port()),
        Inst::new("DISCOVERABLECLIENT", "dc-2", closed_port()),
    ]);
    let p = Proc::start(&registry, &[]);
    let port = p.port().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = format!("wss://localhost:{port}/ws/v1/discoverableclient/x")
        .into_client_request()
        .unwrap();
    let e = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(p.cert.client_config())),
    )
    .await
    .unwrap_err();
    assert_eq!(refused(e).0, 502);
    p.wait_line("\"handshake failed\"").await;
    let next = p.count_lines("trying the next instance");
    assert_eq!(next, 1, "{:#?}", p.lines.lock().unwrap());
}

/// Issue 14 item 11: starting from the registry cache, the first log line about the failed
/// fetch says the cache is being tried, not "no routes".
#[tokio::test]
async fn a_start_from_the_cache_does_not_first_claim_no_routes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("registry-cache.xml");
    std::fs::write(
        &cache,
        registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", 9)]),
    )
    .unwrap();
    let down = closed_port();
    let section = format!(
        "[registry]\neureka_urls = [\"http://127.0.0.1:{down}/eureka/\"]\ncache = {:?}\nconnect_timeout = \"500ms\"\n",
        cache.display().to_string()
    );
    let p = Proc::start_in(dir, &section, &[]);
    p.wait_line("serving the last-known-good registry from the cache")
        .await;
    p.wait_line("trying the last-known-good registry cache")
        .await;
    let no_routes = p.count_lines("no routes");
    assert_eq!(no_routes, 0, "{:#?}", p.lines.lock().unwrap());
}

/// Issue 14 item 8: refusals below the upgrade are logged, but not one line each: 30 garbage
/// requests within a few seconds give one line.
#[tokio::test]
async fn refusals_below_the_upgrade_are_logged_without_flooding() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let p = Proc::start(
        &registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]),
        &[],
    );
    let port = p.port().await;
    for _ in 0..30 {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(p.cert.client_config())
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"NOT HTTP\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 400"));
    }
    let first = p.wait_line("connection refused before the upgrade").await;
    assert_eq!(first["fields"]["reason"], "malformed_request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = p.count_lines("connection refused before the upgrade");
    assert_eq!(refused, 1, "{:#?}", p.lines.lock().unwrap());
}

/// The process's resident high-water mark (`VmHWM`), in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A Eureka stand-in that answers each request with `size` bytes of JSON whitespace, chunked
/// (no `Content-Length`), gzip-compressed when `gzip` (as 1 MiB gzip members, which is still
/// one gzip stream, RFC 1952 §2.2); the first answer waits for `go`.
/// Returns its URL and a receiver told when the first request arrived.
async fn oversized_eureka(
    size: usize,
    gzip: bool,
    go: tokio::sync::oneshot::Receiver<()>,
) -> (String, tokio::sync::oneshot::Receiver<()>) {
    use std::io::Write as _;
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/eureka/", listener.local_addr().unwrap());
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let mut body = vec![b' '; size];
    body[0] = b'{';
    if gzip {
        let member = |data: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(data).unwrap();
            gz.finish().unwrap()
        };
        let (first, rest) = (member(&body[..1 << 20]), member(&body[1 << 20..2 << 20]));
        body = first;
        for _ in 1..size >> 20 {
            body.extend_from_slice(&rest);
        }
    }
    let body = Arc::new(body);
    tokio::spawn(async move {
        let (mut arrived_tx, mut go) = (Some(arrived_tx), Some(go));
        while let Ok((mut tcp, _)) = listener.accept().await {
            crate::support::read_request_head(&mut tcp).await;
            if let (Some(a), Some(g)) = (arrived_tx.take(), go.take()) {
                let _ = a.send(());
                let _ = g.await;
            }
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let enc = if gzip {
                    "Content-Encoding: gzip\r\n"
                } else {
                    ""
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{enc}Transfer-Encoding: chunked\r\n\r\n");
                let _ = tcp.write_all(head.as_bytes()).await;
                for chunk in body.chunks(64 * 1024) {
                    let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
                    c.extend_from_slice(chunk);
                    c.extend_from_slice(b"\r\n");
                    if tcp.write_all(&c).await.is_err() {
                        return;
                    }
                }
                let _ = tcp.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (url, arrived)
}

/// Issue 14 item 10: an answer over `registry.max_payload_size` (96 MiB against the default
/// 64 MiB), plain or gzip, without a length to refuse it by, raises the agent's resident
/// high-water mark by at most 1.25 × the limit while it is read and refused (2.9 × before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_registry_answer_costs_at_most_a_quarter_over_the_limit() {
    const LIMIT_MIB: u64 = 64;
    for gzip in [false, true] {
        let (go_tx, go) = tokio::sync::oneshot::channel();
        let (url, arrived) = oversized_eureka(96 << 20, gzip, go).await;
        let p = Proc::start_in(
            tempfile::tempdir().unwrap(),
            &format!(
                "[registry]\neureka_urls = [{url:?}]\nfull_fetch_only = true\nrefresh_interval = \"1s\"\n"
            ),
            &[],
        );
        arrived.await.unwrap();
        let before = vm_hwm_kib(p.child.id());
        go_tx.send(()).unwrap();
        p.wait_line("over the limit").await;
        let grown = vm_hwm_kib(p.child.id()) - before;
        eprintln!("oversized registry answer (gzip {gzip}): high-water mark +{grown} KiB");
        assert!(
            grown <= LIMIT_MIB * 1024 * 5 / 4,
            "gzip {gzip}: high-water mark grew by {grown} KiB for a {LIMIT_MIB} MiB limit"
        );
    }
}

/// The last sessions that closed and the last refused upgrades, bounded by `admin.recent`,
/// at `/application/websockets/closed` and `/refused` and through `wsrelay sessions
/// --closed|--refused` (issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_sessions_and_refused_upgrades_are_kept_for_inspection() {
    let (_svc, agent) = TestAgent::with_echo_service("[admin]\nrecent = 2\n").await;
    for (n, by_service) in [(1u8, false), (2, true), (3, false)] {
        let mut ws = agent
            .connect(&format!("/ws/v1/discoverableclient/s{n}"), &[])
            .await
            .unwrap()
            .0;
        ws.send(Message::text("12345")).await.unwrap();
        ws.next().await.unwrap().unwrap();
        if by_service {
            ws.send(Message::text("close:4001:bye")).await.unwrap();
            read_close(&mut ws).await;
        } else {
            ws.close(None).await.unwrap();
            read_close(&mut ws).await;
        }
        agent.wait_sessions(0).await;
    }
    let (_, closed) = agent.get_json("/application/websockets/closed").await;
    let closed = closed.as_array().unwrap();
    assert_eq!(closed.len(), 2, "bounded by admin.recent: {closed:?}");
    assert!(closed[0]["gatewayPath"].as_str().unwrap().ends_with("/s3"));
    assert_eq!(closed[0]["closedBy"], "client");
    assert_eq!(closed[0]["closeCode"], 1005);
    assert!(closed[1]["gatewayPath"].as_str().unwrap().ends_with("/s2"));
    assert_eq!(closed[1]["closedBy"], "service");
    assert_eq!(closed[1]["closeCode"], 4001);
    assert_eq!(closed[1]["closeReason"], "bye");
    assert_eq!(
        (
            closed[1]["messagesIn"].as_u64(),
            closed[1]["bytesOut"].as_u64()
        ),
        (Some(2), Some(5))
    );
    assert!(closed[1]["durationMs"].is_u64());

    for path in ["/ws/v1/nosuch/x", "/ws/v1/discoverableclient/%2e%2e/x"] {
        let _ = agent.connect(path, &[]).await.unwrap_err();
    }
    let (_, refused) = agent.get_json("/application/websockets/refused").await;
    let refused = refused.as_array().unwrap();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["status"], 400);
    assert!(
        refused[0]["cause"].as_str().unwrap().contains("'..'"),
        "{refused:?}"
    );
    assert_eq!(refused[1]["status"], 404);
    assert_eq!(refused[1]["path"], "/ws/v1/nosuch/x");
    assert!(refused[1]["clientAddress"]
        .as_str()
        .unwrap()
        .starts_with("/127.0.0.1:"));

    // The same through the command line.
    let url = format!("https://127.0.0.1:{}", agent.agent.local_addr.port());
    let out = tokio::task::spawn_blocking(move || {
        let run = |flag: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_wsrelay"))
                .args(["sessions", flag, "--url", &url])
                .output()
                .unwrap()
        };
        (run("--closed"), run("--refused"))
    })
    .await
    .unwrap();
    let closed = String::from_utf8_lossy(&out.0.stdout);
    assert!(
        closed.contains("4001")
            && closed.contains("service")
            && closed.ends_with("2 closed sessions\n"),
        "{closed}"
    );
    let refused = String::from_utf8_lossy(&out.1.stdout);
    assert!(
        refused.contains("/ws/v1/nosuch/x") && refused.ends_with("2 refused upgrades\n"),
        "{refused}"
    );
}
