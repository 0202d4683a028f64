//! Hostile registry payloads, from a Eureka server and from the registry file: garbage,
//! truncated, 100 MB, deeply nested, wrong content type, an HTML page, a gzip bomb and a
//! slow drip. Each one is refused within bounded time and memory (the size limit is checked
//! while reading, after decompression), recorded as the last error, and the last good routing
//! table keeps serving real sessions; the next good payload recovers.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::support::eureka::{FakeEureka, Mode, TestInstance};
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Upper bound for any single wait here (not a speed assertion: a guard against hanging).
const GUARD: Duration = Duration::from_secs(30);

/// The route still works end to end: a session opens and echoes.
async fn session_works(agent: &TestAgent) {
    let (mut ws, _) = agent
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .expect("the last good table still routes");
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    ws.close(None).await.unwrap();
}

fn last_error(agent: &TestAgent) -> Option<String> {
    agent.agent.shared.registry.snapshot().last_error
}

/// Waits until the registry source reports an error (returned), bounded by [`GUARD`].
async fn wait_error(agent: &TestAgent, what: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(e) = last_error(agent) {
            return e;
        }
        assert!(
            started.elapsed() < GUARD,
            "{what}: no registry error recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the registry source reports success again.
async fn wait_ok(agent: &TestAgent, what: &str) {
    let started = Instant::now();
    while last_error(agent).is_some() {
        assert!(started.elapsed() < GUARD, "{what}: did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces `path` as operators and the kubelet do (a new file renamed over it), so the
/// watcher never reads a half-written file.
fn atomic_write(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn big_payload(n: usize) -> Vec<u8> {
    let mut v = vec![b' '; n];
    v[0] = b'{';
    v
}

fn deep_json(depth: usize) -> Vec<u8> {
    format!(
        "{{\"applications\":{{\"versions__delta\":\"1\",\"application\":{}{}}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes()
}

const LOGIN_PAGE: &[u8] =
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>user</form></body></html>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eureka_hostile_payloads_keep_the_last_good_table() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let eureka = FakeEureka::start().await;
    eureka.add(
        TestInstance::new("discoverableclient", "127.0.0.1", svc.port())
            .meta("apiml.routes.ws_v1.gatewayUrl", "/ws/v1/")
            .meta("apiml.routes.ws_v1.serviceUrl", "/discoverableclient/ws"),
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_with(
        &format!(
            "[registry]\neureka_urls = [{:?}]\nrefresh_interval = \"50ms\"\nread_timeout = \"1s\"\nfull_fetch_only = true\n",
            eureka.service_url()
        ),
        "",
        dir,
    )
    .await;
    session_works(&agent).await;
    let good_json = {
        let r = reqwest_get(&eureka.url("apps/")).await;
        assert!(r.starts_with(b"{"), "{}", String::from_utf8_lossy(&r));
        r
    };

    let canned = |ct: &str, body: Vec<u8>| Mode::Canned {
        status: 200,
        content_type: ct.into(),
        body,
    };
    let cases: Vec<(&str, Mode, &str)> = vec![
        ("garbage", Mode::Garbage, "neither JSON nor XML"),
        (
            "truncated",
            canned(
                "application/json",
                good_json[..good_json.len() / 2].to_vec(),
            ),
            "invalid Eureka JSON",
        ),
        (
            "100 MB",
            canned("application/json", big_payload(100 << 20)),
            "over the limit",
        ),
        (
            "deeply nested",
            canned("application/json", deep_json(1_000_000)),
            "invalid Eureka JSON",
        ),
        (
            "HTML login page with 200",
            canned("text/html", LOGIN_PAGE.to_vec()),
            "unexpected root element <html>",
        ),
        ("HTTP 500", Mode::Fail(500), "500"),
        ("stalled server", Mode::Stall, "timed out"),
    ];
    for (what, mode, cause) in cases {
        eureka.set_mode(mode);
        let e = wait_error(&agent, what).await;
        assert!(e.contains(cause), "{what}: {e}");
        session_works(&agent).await;
        eureka.set_mode(Mode::Normal);
        wait_ok(&agent, what).await;
    }
    // A wrong content type with a valid payload is accepted: the format is read from the
    // content (as the file source does), the content type is only a hint.
    eureka.set_mode(canned("text/plain", good_json.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(last_error(&agent), None);
    session_works(&agent).await;
}

/// A minimal HTTP GET (no extra dependency): returns the body.
async fn reqwest_get(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    tcp.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
    let body = buf[at..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        // De-chunk.
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
            rest = &rest[line_end + 2 + n + 2..];
        }
    }
    body
}

/// A hand-made "Eureka server": the first request gets `first` (a good registry), every later
/// one gets what `later` writes (slow drip, gzip bomb, ...).
async fn scripted_server<F, Fut>(first: Vec<u8>, later: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            crate::support::read_request_head(&mut tcp).await;
            n += 1;
            if n == 1 {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    first.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&first).await;
            } else {
                tokio::spawn(later(tcp));
            }
        }
    });
    format!("http://127.0.0.1:{}/eureka/", addr.port())
}

async fn scripted_agent(url: &str, extra: &str) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    TestAgent::start_with(
        &format!(
            "[registry]\neureka_urls = [{url:?}]\nrefresh_interval = \"50ms\"\nread_timeout = \"1s\"\nconnect_timeout = \"1s\"\nfull_fetch_only = true\n{extra}"
        ),
        "",
        dir,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_server_times_out_and_the_table_stays() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let good = registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]).into_bytes();
    let url = scripted_server(good, |mut tcp| async move {
        // A valid start, then one byte every 100 ms: never done within the read timeout.
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n<applications>")
            .await;
        for _ in 0..600 {
            if tcp.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let agent = scripted_agent(&url, "").await;
    session_works(&agent).await;
    let e = wait_error(&agent, "slow drip").await;
    assert!(e.contains("timed out") || e.contains("timeout"), "{e}");
    session_works(&agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_cut_at_the_size_limit() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let good = registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]).into_bytes();
    // 32 MiB of JSON-looking spaces compress to ~32 KiB; the limit here is 1 MiB.
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"applications\":").unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..32 {
            gz.write_all(&spaces).unwrap();
        }
        gz.finish().unwrap()
    };
    assert!(bomb.len() < 1 << 20);
    let bomb = std::sync::Arc::new(bomb);
    let url = scripted_server(good, move |mut tcp| {
        let bomb = std::sync::Arc::clone(&bomb);
        async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bomb.len()
            );
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(&bomb).await;
        }
    })
    .await;
    let agent = scripted_agent(&url, "max_payload_size = \"1MiB\"\n").await;
    session_works(&agent).await;
    let e = wait_error(&agent, "gzip bomb").await;
    assert!(e.contains("over the limit"), "{e}");
    session_works(&agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_registry_files_keep_the_last_good_table() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let good = registry_xml(&[Inst::new("DISCOVERABLECLIENT", "dc-1", svc.port())]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.xml");
    atomic_write(&path, &good).unwrap();
    let agent = TestAgent::start_with(
        &format!(
            "[registry]\nfile = {:?}\nrefresh_interval = \"50ms\"\n",
            path.display().to_string()
        ),
        "",
        tempfile::tempdir().unwrap(),
    )
    .await;
    session_works(&agent).await;
    type Writer = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Writer, &str)> = vec![
        (
            "garbage",
            Box::new(|p| atomic_write(p, b"\xff\xfe\x00 not a registry").unwrap()),
            "neither JSON nor XML",
        ),
        (
            "truncated",
            Box::new({
                let g = good.clone();
                move |p| atomic_write(p, &g.as_bytes()[..g.len() / 2]).unwrap()
            }),
            "invalid Eureka XML",
        ),
        (
            "100 MB",
            // Sparse: refused from its size before it is read.
            Box::new(|p| {
                let tmp = p.with_extension("tmp");
                let f = std::fs::File::create(&tmp).unwrap();
                f.set_len(100 << 20).unwrap();
                std::fs::rename(&tmp, p).unwrap();
            }),
            "over the limit",
        ),
        (
            "deeply nested",
            Box::new(|p| atomic_write(p, deep_json(1_000_000)).unwrap()),
            "invalid Eureka JSON",
        ),
        (
            "HTML page",
            Box::new(|p| atomic_write(p, LOGIN_PAGE).unwrap()),
            "unexpected root element",
        ),
        (
            "empty",
            Box::new(|p| atomic_write(p, b"").unwrap()),
            "empty",
        ),
        (
            "missing",
            Box::new(|p| std::fs::remove_file(p).unwrap()),
            "cannot read",
        ),
    ];
    for (what, write, cause) in cases {
        write(&path);
        let e = wait_error(&agent, what).await;
        assert!(e.contains(cause), "{what}: {e}");
        session_works(&agent).await;
        atomic_write(&path, &good).unwrap();
        wait_ok(&agent, what).await;
    }
}
