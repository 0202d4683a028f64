//! The Eureka client against the test Eureka server (`crate::support::eureka::FakeEureka`): deltas,
//! hash reconciliation, failover, the last-known-good cache, mutual TLS and basic auth, and
//! self-registration. Client-level tests drive `EurekaClient::refresh` step by step (no timers);
//! agent-level tests run the real agent with short intervals.

use std::sync::Arc;
use std::time::Duration;

use crate::support::eureka::{FakeEureka, Mode, TestInstance};
use crate::support::{ServiceOptions, TestAgent, TestService};
use arc_swap::ArcSwap;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject as _;
use tokio_tungstenite::tungstenite::Message;
use wsrelay::config::Config;
use wsrelay::metrics::{OutcomeLabel, RegistryMetrics, ServerLabel};
use wsrelay::registry::eureka::{EurekaClient, Outcome};
use wsrelay::registry::{Publisher, RegistryStatus, Snapshot};
use wsrelay::routing::RouteTable;

fn config(registry: &str) -> Config {
    Config::from_toml(
        &format!("[tls]\nenabled = false\n[registry]\n{registry}"),
        None,
    )
    .unwrap()
}

fn client(cfg: &Config) -> EurekaClient {
    let wsrelay::config::RegistrySource::Eureka(urls) = &cfg.registry.source else {
        panic!("not a Eureka config");
    };
    EurekaClient::new(
        urls.clone(),
        &cfg.registry,
        wsrelay::tls::client_config(None).unwrap(),
    )
    .unwrap()
}

/// A publisher wired to a routing table, as `lib.rs` wires them.
struct Wired {
    publisher: Publisher,
    routes: Arc<ArcSwap<RouteTable>>,
}

impl std::ops::Deref for Wired {
    type Target = Publisher;
    fn deref(&self) -> &Publisher {
        &self.publisher
    }
}

fn publisher() -> Wired {
    let routes = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
    Wired {
        publisher: Publisher {
            sink: Arc::new(wsrelay::routing::TableSink {
                routes: Arc::clone(&routes),
                insecure_upstream: false,
                scope: wsrelay::config::RouteScope::WsPrefixed,
            }),
            status: Arc::new(RegistryStatus::default()),
            metrics: RegistryMetrics::default(),
        },
        routes,
    }
}

fn fetches(p: &Publisher, outcome: &'static str) -> u64 {
    p.metrics
        .fetches
        .get_or_create(&OutcomeLabel { outcome })
        .get()
}

/// `APP/id/STATUS` of every instance, sorted.
fn view(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .applications
        .iter()
        .flat_map(|a| {
            a.instances
                .iter()
                .map(move |i| format!("{}/{}/{}", a.name, i.instance_id, i.status))
        })
        .collect();
    v.sort();
    v
}

/// `METHOD /path?query` of every request the server saw.
fn log(e: &FakeEureka) -> Vec<String> {
    e.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn routed(name: &str, port: u16) -> TestInstance {
    TestInstance::new(name, "127.0.0.1", port)
        .meta("apiml.routes.ws_v1.gatewayUrl", "ws/v1")
        .meta("apiml.routes.ws_v1.serviceUrl", "/discoverableclient/ws")
}

async fn echo(
    ws: &mut tokio_tungstenite::WebSocketStream<
        impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    >,
) {
    ws.send(Message::text("ping")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("ping"));
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn deltas_are_applied_in_order_and_idempotently() {
    for format in ["json", "xml"] {
        let eureka = FakeEureka::start().await;
        eureka.add(routed("alpha", 1001).id("a1"));
        eureka.add(routed("alpha", 1002).id("a2"));
        eureka.add(TestInstance::new("beta", "127.0.0.1", 2001).id("b1"));
        let cfg = config(&format!(
            "eureka_urls = [{:?}]\nformat = {format:?}\n",
            eureka.service_url()
        ));
        let c = client(&cfg);
        let p = publisher();
        assert_eq!(c.refresh(&p).await, Outcome::Full);
        let (full, _) = c.fetch().await.unwrap();
        assert_eq!(view(&c.local_registry().await.unwrap()), view(&full));

        // ADDED, MODIFIED (override), DELETED (last instance of BETA), and DELETED then ADDED
        // again for the same id: the delta carries the latest change of each instance.
        eureka.add(routed("alpha", 1003).id("a3"));
        assert!(eureka.override_status("ALPHA", "a2", "OUT_OF_SERVICE"));
        assert!(eureka.remove("BETA", "b1"));
        assert!(eureka.remove("ALPHA", "a1"));
        eureka.add(routed("alpha", 1001).id("a1").status("DOWN"));
        assert_eq!(c.refresh(&p).await, Outcome::Delta, "{format}");
        let local = view(&c.local_registry().await.unwrap());
        assert_eq!(
            local,
            ["ALPHA/a1/DOWN", "ALPHA/a2/OUT_OF_SERVICE", "ALPHA/a3/UP"],
            "{format}: BETA is gone with its last instance"
        );
        assert_eq!(local, view(&c.fetch().await.unwrap().0));
        // The published table follows: ALPHA has one UP instance (a3).
        let table = p.routes.load();
        let alpha = table
            .services()
            .into_iter()
            .find(|s| s.service_id == "ALPHA")
            .expect("ALPHA routes");
        assert_eq!(alpha.up_count(), 1);

        // The next delta repeats the same changes (delta window): nothing moves.
        assert_eq!(c.refresh(&p).await, Outcome::Delta);
        assert_eq!(view(&c.local_registry().await.unwrap()), local);

        // A later change on top of the earlier ones is applied after them.
        assert!(eureka.set_status("ALPHA", "a3", "DOWN"));
        assert_eq!(c.refresh(&p).await, Outcome::Delta);
        let later = view(&c.local_registry().await.unwrap());
        assert_eq!(
            later,
            ["ALPHA/a1/DOWN", "ALPHA/a2/OUT_OF_SERVICE", "ALPHA/a3/DOWN"]
        );
        assert_eq!(later, view(&c.fetch().await.unwrap().0));

        let full_fetches = log(&eureka)
            .iter()
            .filter(|r| r.as_str() == "GET /eureka/apps/")
            .count();
        // One by refresh, three by the comparisons through `fetch`.
        assert_eq!(full_fetches, 4, "{:?}", log(&eureka));
        assert_eq!(fetches(&p, "full"), 1);
        assert_eq!(fetches(&p, "delta"), 3);
        assert_eq!(fetches(&p, "reconcile"), 0);
        assert!(eureka.requests().iter().all(|r| r
            .accept
            .as_deref()
            .unwrap_or("")
            .contains(format)));
    }
}

#[tokio::test]
async fn a_hash_mismatch_triggers_exactly_one_full_fetch() {
    let eureka = FakeEureka::start().await;
    eureka.add(TestInstance::new("alpha", "127.0.0.1", 1001));
    let cfg = config(&format!("eureka_urls = [{:?}]\n", eureka.service_url()));
    let c = client(&cfg);
    let p = publisher();
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    assert_eq!(c.refresh(&p).await, Outcome::Delta);

    eureka.set_delta_hash_override(Some("UP_999_"));
    eureka.clear_requests();
    assert_eq!(c.refresh(&p).await, Outcome::Reconcile);
    assert_eq!(
        log(&eureka),
        ["GET /eureka/apps/delta", "GET /eureka/apps/"]
    );
    assert_eq!(fetches(&p, "reconcile"), 1);

    eureka.set_delta_hash_override(None);
    eureka.clear_requests();
    assert_eq!(c.refresh(&p).await, Outcome::Delta);
    assert_eq!(log(&eureka), ["GET /eureka/apps/delta"]);

    // A server that refuses deltas (403, `disableDelta`) gets a full fetch instead.
    eureka.set_delta_disabled(true);
    eureka.clear_requests();
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    assert_eq!(
        log(&eureka),
        ["GET /eureka/apps/delta", "GET /eureka/apps/"]
    );
    assert_eq!(fetches(&p, "full"), 2);
    assert_eq!(fetches(&p, "reconcile"), 1);
}

#[tokio::test]
async fn full_fetch_only_and_vip_never_ask_for_deltas() {
    let eureka = FakeEureka::start().await;
    eureka.add(TestInstance::new("alpha", "127.0.0.1", 1001).vip("alpha-vip"));
    eureka.add(TestInstance::new("beta", "127.0.0.1", 2001).vip("beta-vip"));
    let url = eureka.service_url();

    let c = client(&config(&format!(
        "eureka_urls = [{url:?}]\nfull_fetch_only = true\n"
    )));
    let p = publisher();
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    assert_eq!(log(&eureka), ["GET /eureka/apps/", "GET /eureka/apps/"]);

    eureka.clear_requests();
    let c = client(&config(&format!(
        "eureka_urls = [{url:?}]\nvip = \"alpha-vip\"\n"
    )));
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    assert_eq!(
        view(&c.local_registry().await.unwrap()),
        ["ALPHA/127.0.0.1:alpha:1001/UP"]
    );
    assert_eq!(
        log(&eureka),
        ["GET /eureka/vips/alpha-vip", "GET /eureka/vips/alpha-vip"]
    );
}

#[tokio::test]
async fn fails_over_to_the_second_server_when_the_first_refuses_stalls_or_sends_garbage() {
    for bad_mode in [Mode::Refuse, Mode::Stall, Mode::Garbage, Mode::Fail(503)] {
        let bad = FakeEureka::start().await;
        bad.add(TestInstance::new("bad", "127.0.0.1", 1));
        bad.set_mode(bad_mode.clone());
        let good = FakeEureka::start().await;
        good.add(TestInstance::new("alpha", "127.0.0.1", 1001));
        // Zone "a" (the bad server) is tried first.
        let cfg = config(&format!(
            "zone = \"a\"\nconnect_timeout = \"200ms\"\nread_timeout = \"300ms\"\n[registry.zone_urls]\na = [{:?}]\nb = [{:?}]\n",
            bad.service_url(),
            good.service_url()
        ));
        let c = client(&cfg);
        let p = publisher();
        assert_eq!(c.refresh(&p).await, Outcome::Full, "{bad_mode:?}");
        assert_eq!(
            view(&c.local_registry().await.unwrap()),
            ["ALPHA/127.0.0.1:alpha:1001/UP"],
            "{bad_mode:?}"
        );
        assert_eq!(c.current_server(), Some(good.service_url()));
        let gauge = p
            .metrics
            .server
            .get_or_create(&ServerLabel {
                server: good.service_url(),
            })
            .get();
        assert_eq!(gauge, 1);
        let tried = bad.requests().len();
        if bad_mode == Mode::Refuse {
            assert_eq!(tried, 0);
        } else {
            assert_eq!(tried, 1, "{bad_mode:?}: the first server was tried");
        }
        // The working server is kept: the next refresh does not go back to the bad one.
        assert_eq!(c.refresh(&p).await, Outcome::Delta, "{bad_mode:?}");
        assert_eq!(bad.requests().len(), tried, "{bad_mode:?}");
        assert_eq!(fetches(&p, "error"), 0);
    }
}

#[tokio::test]
async fn when_every_server_fails_the_last_table_stays_and_timeouts_are_reported() {
    let svc_port = 1001;
    let eureka = FakeEureka::start().await;
    eureka.add(routed("alpha", svc_port));
    let cfg = config(&format!(
        "eureka_urls = [{:?}]\nconnect_timeout = \"200ms\"\nread_timeout = \"200ms\"\n",
        eureka.service_url()
    ));
    let c = client(&cfg);
    let p = publisher();
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    let before = p.routes.load_full();
    assert_eq!(before.len(), 1);

    eureka.set_mode(Mode::Stall);
    assert_eq!(c.refresh(&p).await, Outcome::Failed { timed_out: true });
    eureka.set_mode(Mode::Refuse);
    assert_eq!(c.refresh(&p).await, Outcome::Failed { timed_out: false });
    assert!(Arc::ptr_eq(&before, &p.routes.load_full()), "table kept");
    let status = p.status.snapshot();
    assert!(status.last_error.unwrap().contains(&eureka.service_url()));
    assert!(!status.from_cache);
    assert_eq!(fetches(&p, "error"), 2);

    // Back to normal: a delta (the local registry was kept) and the error clears.
    eureka.set_mode(Mode::Normal);
    assert_eq!(c.refresh(&p).await, Outcome::Delta);
    assert!(p.status.snapshot().last_error.is_none());
}

/// A TLS front for a fake Eureka server that requires a client certificate signed by
/// `client_ca` (PEM); returns its port.
async fn mtls_front(
    eureka: &FakeEureka,
    server: &crate::support::TestCert,
    client_ca: &str,
) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        wsrelay::tls::provider(),
    )
    .build()
    .unwrap();
    let key = wsrelay::tls::load_certified_key(&server.cert_path(), &server.key_path()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(wsrelay::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(wsrelay::tls::CertStore::new(key)));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = eureka.addr();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn mutual_tls_and_basic_auth_reach_a_protected_eureka_and_secrets_stay_out_of_errors() {
    let eureka = FakeEureka::start().await;
    eureka.add(TestInstance::new("alpha", "127.0.0.1", 1001));
    let server = crate::support::TestCert::new();
    let dir = tempfile::tempdir().unwrap();
    let (client_cert, client_key) = wsrelay::tls::self_signed_pem(&["wsrelay-client"]).unwrap();
    std::fs::write(dir.path().join("client.crt"), &client_cert).unwrap();
    std::fs::write(dir.path().join("client.key"), &client_key).unwrap();
    let port = mtls_front(&eureka, &server, &client_cert).await;
    let url = format!("https://user:s3cret@localhost:{port}/eureka/");
    let base = format!(
        "eureka_urls = [{url:?}]\nca_file = {:?}\n",
        server.cert_path().display().to_string()
    );

    let with_cert = config(&format!(
        "{base}client_cert = {:?}\nclient_key = {:?}\n",
        dir.path().join("client.crt").display().to_string(),
        dir.path().join("client.key").display().to_string()
    ));
    let c = client(&with_cert);
    let p = publisher();
    assert_eq!(c.refresh(&p).await, Outcome::Full);
    let auth = eureka.requests()[0]
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(auth.as_deref(), Some("Basic dXNlcjpzM2NyZXQ="));
    assert_eq!(
        c.current_server(),
        Some(format!("https://localhost:{port}/eureka/"))
    );
    assert_eq!(
        p.status.snapshot().source,
        format!("https://localhost:{port}/eureka/")
    );

    // Without the client certificate the TLS handshake is refused.
    let without = client(&config(&base));
    let p2 = publisher();
    assert!(without.refresh(&p2).await.failed());
    let err = p2.status.snapshot().last_error.unwrap();
    assert!(err.contains(&format!("localhost:{port}")), "{err}");
    assert!(!err.contains("s3cret") && !err.contains("user:"), "{err}");
    assert_eq!(
        eureka.requests().len(),
        1,
        "nothing got through without a certificate"
    );
}

fn agent_registry(eureka: &FakeEureka, extra: &str) -> String {
    format!(
        "[registry]\neureka_urls = [{:?}]\nrefresh_interval = \"100ms\"\nconnect_timeout = \"200ms\"\nread_timeout = \"300ms\"\n{extra}",
        eureka.service_url()
    )
}

#[tokio::test]
async fn a_restart_with_every_server_down_serves_from_the_cache() {
    let svc = TestService::start(ServiceOptions::default()).await;
    let eureka = FakeEureka::start().await;
    eureka.add(routed("discoverableclient", svc.port()));
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("registry.json");
    let cache_key = format!("cache = {:?}\n", cache.display().to_string());

    let first = TestAgent::start_with(
        &agent_registry(&eureka, &cache_key),
        "",
        tempfile::tempdir().unwrap(),
    )
    .await;
    assert!(cache.exists(), "the first fetch writes the cache");
    assert!(!first.agent.shared.registry.snapshot().from_cache);
    first.token.cancel();
    assert!(first.agent.drained(Duration::from_secs(5)).await);
    drop(first);

    // Every server down: the new agent routes from the cache.
    eureka.set_mode(Mode::Refuse);
    let second = TestAgent::start_with(
        &agent_registry(&eureka, &cache_key),
        "",
        tempfile::tempdir().unwrap(),
    )
    .await;
    let status = second.agent.shared.registry.snapshot();
    assert!(status.from_cache, "{status:?}");
    assert!(status.source.contains("registry.json"), "{status:?}");
    assert!(status.last_error.is_some());
    let (mut ws, _) = second
        .connect("/ws/v1/discoverableclient/x", &[])
        .await
        .unwrap();
    echo(&mut ws).await;
    ws.close(None).await.unwrap();

    // Discovery is back: the agent leaves the cache behind.
    eureka.set_mode(Mode::Normal);
    wait_until("a server answers again", || {
        !second.agent.shared.registry.snapshot().from_cache
    })
    .await;
    // The cache is rewritten from the server; no temporary file stays behind.
    let files = || -> Vec<String> {
        std::fs::read_dir(cache_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    wait_until("only the cache file is left", || {
        files() == ["registry.json"]
    })
    .await;
}

const INSTANCE: &str = "[eureka.instance]\nhost_name = \"localhost\"\nrenewal_interval = \"100ms\"\nlease_duration = \"2s\"\n[eureka.instance.metadata]\n\"apiml.service.title\" = \"WebSocket relay\"\n";

#[tokio::test]
async fn self_registration_is_visible_in_the_server_and_gone_after_shutdown() {
    let eureka = FakeEureka::start().await;
    let agent = TestAgent::start_with(
        &agent_registry(&eureka, ""),
        INSTANCE,
        tempfile::tempdir().unwrap(),
    )
    .await;
    let port = agent.agent.local_addr.port();
    let id = format!("localhost:wsrelay:{port}");
    wait_until("registered", || eureka.instance("WSRELAY", &id).is_some()).await;
    let inst = eureka.instance("WSRELAY", &id).unwrap();
    assert_eq!(inst.host_name, "localhost");
    assert_eq!(inst.ip_addr, "127.0.0.1");
    assert_eq!(inst.status, "UP");
    assert_eq!((inst.secure_port, inst.secure_port_enabled), (port, true));
    assert!(!inst.port_enabled);
    assert_eq!(inst.data_center, "MyOwn");
    assert_eq!((inst.renewal_interval_secs, inst.duration_secs), (1, 2));
    assert_eq!(inst.vip_address, "wsrelay");
    assert_eq!(
        inst.health_check_url.as_deref(),
        Some(format!("https://localhost:{port}/application/health").as_str())
    );
    assert_eq!(
        inst.meta_value("apiml.service.title"),
        Some("WebSocket relay")
    );
    let post = eureka
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.path, "/eureka/apps/WSRELAY");
    assert!(post.header("content-type").unwrap().contains("json"));
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(
        body["instance"]["dataCenterInfo"]["@class"],
        "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
    );
    let heartbeat = format!("PUT /eureka/apps/WSRELAY/{id}?status=UP&lastDirtyTimestamp=");
    assert!(
        eureka
            .wait_for_requests(Duration::from_secs(5), |rs| rs.iter().any(|r| format!(
                "{} {}",
                r.method, r.path
            )
            .starts_with(&heartbeat)))
            .await,
        "{:?}",
        log(&eureka)
    );
    // The agent also sees itself in the registry it fetches.
    assert_eq!(eureka.instance_count(), 1);

    agent.token.cancel();
    assert!(agent.agent.drained(Duration::from_secs(5)).await);
    assert!(eureka.instance("WSRELAY", &id).is_none(), "deregistered");
    // The drain registers the agent DOWN (its own status) and cancels; no server-side override.
    let requests = eureka.requests();
    assert!(
        !requests.iter().any(|r| r.path.contains("/status")),
        "{:?}",
        log(&eureka)
    );
    let tail = &requests[requests.len() - 2..];
    assert_eq!(
        (tail[0].method.as_str(), tail[0].path.as_str()),
        ("POST", "/eureka/apps/WSRELAY")
    );
    let body: serde_json::Value = serde_json::from_slice(&tail[0].body).unwrap();
    assert_eq!(body["instance"]["status"], "DOWN");
    assert_eq!(tail[1].method, "DELETE");
    assert_eq!(tail[1].path, format!("/eureka/apps/WSRELAY/{id}"));
}

#[tokio::test]
async fn registers_again_after_the_server_forgets_the_lease() {
    let eureka = FakeEureka::start().await;
    let agent = TestAgent::start_with(
        &agent_registry(&eureka, ""),
        INSTANCE,
        tempfile::tempdir().unwrap(),
    )
    .await;
    let id = format!("localhost:wsrelay:{}", agent.agent.local_addr.port());
    let posts = || {
        eureka
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    wait_until("registered", || eureka.instance("WSRELAY", &id).is_some()).await;
    assert_eq!(posts(), 1);

    // The server forgets the lease (eviction or restart): the heartbeat gets 404.
    assert!(eureka.remove("WSRELAY", &id));
    wait_until("registered again", || {
        eureka.instance("WSRELAY", &id).is_some()
    })
    .await;
    assert_eq!(posts(), 2);

    // The server holds an older lastDirtyTimestamp than the agent: 404 again, register again.
    assert!(eureka.update("WSRELAY", &id, |i| i.last_dirty_timestamp = 1));
    wait_until("registered a third time", || posts() == 3).await;
    let inst = eureka.instance("WSRELAY", &id).unwrap();
    assert!(inst.last_dirty_timestamp > 1);
    assert_eq!(inst.status, "UP");
}
