//! The operators' monitoring against the real thing (issue 19): Debian's Prometheus 2.42 and
//! its `promtool`, installed by `bash scripts/test.sh`. The alert rules pass `promtool check
//! rules` and their unit tests (`tests/prometheus/alerts_test.yml`: each alert firing and not
//! firing); a real Prometheus scrapes a running agent over TLS, and every query of the Grafana
//! dashboard (`deploy/grafana/wsrelay.json`) returns data from it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{registry_xml, Inst, ServiceOptions, TestAgent, TestService};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/test.sh` (it installs Debian's prometheus package)",
        path.display()
    );
    path
}

/// `promtool {args}` in `dir`, asserted to succeed; its stdout.
fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests_and_the_operator_copy_is_the_same() {
    let checked = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"], &root());
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    promtool(
        &["test", "rules", "alerts_test.yml"],
        &root().join("tests/prometheus"),
    );
    // The PrometheusRule holds the same groups, indented under `spec:`.
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let body: Vec<String> = alerts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("  {l}")
            }
        })
        .collect();
    let rule =
        std::fs::read_to_string(root().join("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    assert!(
        rule.contains(&format!("spec:\n{}\n", body.join("\n"))),
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/alerts.yml"
    );
}

/// A Prometheus process; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `https://127.0.0.1:{agent}/application/prometheus` every second.
    fn start(agent_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::spring::free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: wsrelay\n    scheme: https\n    metrics_path: /application/prometheus\n    tls_config:\n      insecure_skip_verify: true\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n"
            ),
        )
        .unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// An instant query's result vector (empty on any error).
    async fn query(&self, client: &reqwest::Client, expr: &str) -> Vec<Value> {
        let answer = client
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .await;
        let Ok(answer) = answer else {
            return Vec::new();
        };
        let bytes = answer.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// Every target expression of the dashboard, with Grafana's variables made concrete.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_agent_and_every_dashboard_query_returns_data() {
    // Two instances, sessions that fail over when one dies.
    let first = TestService::start(ServiceOptions::default()).await;
    let second = TestService::start(ServiceOptions::default()).await;
    let agent = TestAgent::with_registry_file(
        &registry_xml(&[
            Inst::new("DISCOVERABLECLIENT", "dc-1", first.port()),
            Inst::new("DISCOVERABLECLIENT", "dc-2", second.port()),
        ]),
        "[failover]\nmode = \"reconnect\"\n[limits]\nmax_sessions = 100\n",
    )
    .await;
    let prometheus = Prometheus::start(agent.agent.local_addr.port());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Traffic: sessions on both instances, echoes, then one instance dies under them.
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let (mut ws, _) = agent
            .connect("/ws/v1/discoverableclient/x", &[])
            .await
            .unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        ws.next().await.unwrap().unwrap();
        sessions.push(ws);
    }
    first.kill();
    // Every session is on the live instance before more is sent (a message in flight to a
    // dying instance may be lost: README, Session failover).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, live) = agent.get_json("/application/websockets").await;
        if live
            .as_array()
            .is_some_and(|l| l.len() == 4 && l.iter().all(|s| s["instanceId"] == "dc-2"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no failover: {live}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for ws in &mut sessions {
        ws.send(Message::text("after")).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "after" => break,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                other => panic!("no echo after the failover: {other:?}"),
            }
        }
    }
    // A session that ends, a refused upgrade, a connection refused below the upgrade.
    let mut last = sessions.pop().unwrap();
    last.close(None).await.unwrap();
    let _ = agent.connect("/ws/v1/nosuch/x", &[]).await.unwrap_err();
    let mut tcp = tokio::net::TcpStream::connect(agent.agent.local_addr)
        .await
        .unwrap();
    tcp.write_all(b"this is not TLS\r\n\r\n").await.unwrap();
    drop(tcp);

    // Wait until Prometheus has scraped the agent after all of it (its ended sessions too).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prometheus.query(&http, "up{job=\"wsrelay\"} == 1").await;
        let ended = prometheus.query(&http, "wsrelay_sessions_total").await;
        let refused = prometheus
            .query(&http, "wsrelay_connection_refusals_total")
            .await;
        if !up.is_empty() && !ended.is_empty() && !refused.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the agent: up={up:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Two more scrapes, so every rate has two samples.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let queries = dashboard_queries(&root().join("deploy/grafana/wsrelay.json"));
    assert!(queries.len() >= 15, "{queries:?}");
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        if prometheus.query(&http, expr).await.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    // The scrape used the classic text format's counters and the build info.
    let info = prometheus.query(&http, "wsrelay_build_info").await;
    assert_eq!(info[0]["metric"]["version"], env!("CARGO_PKG_VERSION"));
    let switched = prometheus
        .query(
            &http,
            "wsrelay_session_failovers_total{result=\"switched\"}",
        )
        .await;
    assert!(!switched.is_empty());
    drop(sessions);
}
