//! What a real browser sees (issue 16 items 4 and 5): headless Chromium (Debian's
//! `chromium`, driven by `playwright-core` through `tests/browser/page.cjs`; both installed by
//! `bash scripts/test.sh`) loads a page from a loopback origin and opens WebSockets through
//! the agent: the `Origin` allow-list refuses another origin's page, and with
//! `handshake.failure = "close"` the page reads the close code and reason of a failed
//! handshake, where with the default HTTP status it can only see 1006.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::support::{
    read_request_head, registry_xml, Inst, ServiceOptions, TestAgent, TestService,
};

/// The page: opens each WebSocket URL of the JSON array in its `#fragment` in turn, sends `hi`
/// when open (for a URL with `big=1` in its query, `hi` and 10,000 bytes of JSON-like text),
/// closes with 1000 after the echo, and records what the browser reported, including the
/// extensions it agreed (`ws.extensions`).
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>wsrelay</title><script>
window.results = [];
function attempt(url) {
  return new Promise((done) => {
    const r = { url, opened: false, echo: null, code: null, reason: null, extensions: null };
    const big = url.includes('big=1');
    const sent = big ? 'hi' + '{"status":"UP","instance":"dc-1"},'.repeat(10000 / 33) : 'hi';
    const ws = new WebSocket(url);
    ws.onopen = () => { r.opened = true; r.extensions = ws.extensions; ws.send(sent); };
    ws.onmessage = (e) => {
      r.echo = big ? (e.data === sent ? 'same' : 'different') : e.data;
      ws.close(1000);
    };
    ws.onclose = (e) => { r.code = e.code; r.reason = e.reason; done(r); };
  });
}
(async () => {
  for (const url of JSON.parse(decodeURIComponent(location.hash.slice(1)))) {
    window.results.push(await attempt(url));
  }
  window.done = true;
})();
</script>"#;

/// Serves [`PAGE`] to every request on a loopback port; returns the port.
async fn serve_page() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_request_head(&mut tcp).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    port
}

/// Runs `tests/browser/<script>` with `args` in node (headless Chromium through
/// playwright-core) and returns what it printed; panics with its stderr when it fails.
fn node(script: &str, args: &[String]) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("target/interop-js/node_modules");
    assert!(
        modules.join("playwright-core/package.json").is_file() && PathBuf::from("/usr/bin/chromium").is_file(),
        "headless Chromium is missing: run `bash scripts/test.sh` (it installs Debian's chromium and playwright-core)"
    );
    let out = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .env("NODE_PATH", &modules)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Loads `page_origin` + `/#[urls]` for each entry in one Chromium and returns, per page, the
/// results the page recorded.
fn browse(pages: &[(String, Vec<String>)]) -> Vec<Vec<Value>> {
    let urls: Vec<String> = pages
        .iter()
        .map(|(origin, ws)| {
            let plan = serde_json::to_string(ws).unwrap();
            let fragment: String = plan
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{origin}/#{fragment}")
        })
        .collect();
    let all: Vec<Vec<Value>> = serde_json::from_slice(&node("page.cjs", &urls)).unwrap();
    assert_eq!(all.len(), pages.len());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_is_refused_by_origin_and_reads_close_codes_of_failed_handshakes() {
    let page = serve_page().await;
    let own = format!("http://127.0.0.1:{page}");
    let other = format!("http://localhost:{page}"); // another origin: another host
    let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let svc = TestService::start(ServiceOptions {
        accepted: Some(tx),
        ..Default::default()
    })
    .await;
    let mut starting = Inst::new("STARTING", "st-1", svc.port());
    starting.status = "STARTING";
    let registry = registry_xml(&[
        Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port()),
        starting,
    ]);
    let status = TestAgent::with_registry_file(
        &registry,
        &format!("[handshake]\nallowed_origins = [{own:?}]\n"),
    )
    .await;
    let close =
        TestAgent::with_registry_file(&registry, "[handshake]\nfailure = \"close\"\n").await;
    let ws = |agent: &TestAgent, path: &str| {
        format!("wss://127.0.0.1:{}{path}", agent.agent.local_addr.port())
    };
    let echo = "/ws/v1/discoverableclient/x";
    let plan = vec![
        // The allowed origin gets its session; in status mode a failed handshake is 1006.
        (
            own.clone(),
            vec![ws(&status, echo), ws(&status, "/ws/v1/starting/x")],
        ),
        // Another origin's page is refused (the browser sees 1006).
        (other.clone(), vec![ws(&status, echo)]),
        // Without a list any origin passes; with failure = "close" the page reads why.
        (
            other.clone(),
            vec![
                ws(&close, echo),
                ws(&close, "/ws/v1/nosuchservice/x"),
                ws(&close, "/ws/v1/starting/x"),
            ],
        ),
    ];
    // The browser runs beside the agents' tasks, not on a runtime worker.
    let pages = tokio::task::spawn_blocking(move || browse(&plan))
        .await
        .unwrap();
    let r = |p: usize, i: usize| &pages[p][i];
    assert_eq!(
        (
            r(0, 0)["opened"].as_bool(),
            r(0, 0)["echo"].as_str(),
            r(0, 0)["code"].as_u64()
        ),
        (Some(true), Some("hi"), Some(1000)),
        "{pages:?}"
    );
    assert_eq!(r(0, 1)["opened"], false, "{pages:?}");
    assert_eq!(
        r(0, 1)["code"],
        1006,
        "status mode: the page cannot read why"
    );
    assert_eq!(r(1, 0)["opened"], false, "{pages:?}");
    assert_eq!(r(1, 0)["code"], 1006);
    assert_eq!(
        (r(2, 0)["opened"].as_bool(), r(2, 0)["echo"].as_str()),
        (Some(true), Some("hi")),
        "{pages:?}"
    );
    assert_eq!(r(2, 1)["code"], 1008, "{pages:?}");
    assert!(r(2, 1)["reason"]
        .as_str()
        .unwrap()
        .contains("no WebSocket route"));
    assert_eq!(r(2, 2)["code"], 1013, "{pages:?}");
    assert!(r(2, 2)["reason"]
        .as_str()
        .unwrap()
        .contains("has no UP instance"));

    // The refused origin never reached the service: two sessions did (one per agent).
    assert!(accepted.try_recv().is_ok() && accepted.try_recv().is_ok());
    assert!(
        accepted.try_recv().is_err(),
        "a refused upgrade reached the service"
    );
    let (_, _, metrics) = status.get("/application/prometheus", "").await;
    assert!(
        metrics.contains("wsrelay_handshake_failures_total{status=\"403\"} 1"),
        "{metrics}"
    );
}

/// permessage-deflate with a real browser (issue 17): Chromium offers it, the agent answers
/// without context takeover, and a 10,000-byte message crosses both ways (Chromium compresses
/// it, the agent inflates it for a service without the extension and compresses the echo).
/// With `deflate.enabled = false` the browser agrees no extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_agrees_permessage_deflate_with_the_agent_and_messages_cross_compressed() {
    let page = serve_page().await;
    let own = format!("http://127.0.0.1:{page}");
    let svc = TestService::start(ServiceOptions::default()).await;
    let registry = registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]);
    let on = TestAgent::with_registry_file(&registry, "").await;
    let off = TestAgent::with_registry_file(&registry, "[deflate]\nenabled = false\n").await;
    let ws = |agent: &TestAgent, q: &str| {
        format!(
            "wss://127.0.0.1:{}/ws/v1/discoverableclient/x{q}",
            agent.agent.local_addr.port()
        )
    };
    let plan = vec![(
        own,
        vec![ws(&on, ""), ws(&on, "?big=1"), ws(&off, "?big=1")],
    )];
    let pages = tokio::task::spawn_blocking(move || browse(&plan))
        .await
        .unwrap();
    let r = &pages[0];
    assert_eq!(
        r[0]["extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "{pages:?}"
    );
    assert_eq!(
        (r[0]["echo"].as_str(), r[0]["code"].as_u64()),
        (Some("hi"), Some(1000))
    );
    assert_eq!(r[1]["extensions"], r[0]["extensions"]);
    assert_eq!(
        (r[1]["echo"].as_str(), r[1]["code"].as_u64()),
        (Some("same"), Some(1000)),
        "{pages:?}"
    );
    assert_eq!(r[2]["extensions"], "", "{pages:?}");
    assert_eq!(r[2]["echo"], "same");
    let (_, _, metrics) = on.get("/application/prometheus", "").await;
    assert!(
        metrics.contains("wsrelay_deflate_sessions_total{leg=\"client\"} 2"),
        "{metrics}"
    );
}

/// WebSockets over HTTP/2 from a real browser (issue 17 part 2): Chromium loads a page from
/// the agent's own origin over h2 (`/application/info`), then opens two WebSockets from it;
/// they ride that h2 connection as extended CONNECTs (RFC 8441), which the agent counts in
/// `wsrelay_http2_sessions_total`, and agree permessage-deflate as over HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_opens_websockets_over_the_http2_connection_of_the_page() {
    let (_svc, agent) = TestAgent::with_echo_service("").await;
    let port = agent.agent.local_addr.port();
    let ws = format!("wss://127.0.0.1:{port}/ws/v1/discoverableclient/h2");
    let args = vec![
        format!("https://127.0.0.1:{port}/application/info"),
        ws.clone(),
        ws,
    ];
    let out = tokio::task::spawn_blocking(move || node("h2.cjs", &args))
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["pageStatus"], 200, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(
            (
                r["opened"].as_bool(),
                r["echo"].as_str(),
                r["code"].as_u64()
            ),
            (Some(true), Some("same"), Some(1000)),
            "{v}"
        );
        assert_eq!(
            r["extensions"],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }
    let (_, _, metrics) = agent.get("/application/prometheus", "").await;
    assert!(
        metrics.contains("wsrelay_http2_sessions_total 2"),
        "the browser's WebSockets did not arrive over HTTP/2:\n{metrics}"
    );
}
