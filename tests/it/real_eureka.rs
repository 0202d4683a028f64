//! wsrelay against the real thing: the Spring Cloud Netflix Eureka server and Spring Boot
//! WebSocket services registered by the real Eureka client (`interop/`, built by
//! `bash scripts/test.sh`), as child processes on loopback ports chosen at run time.
//!
//! Every test runs the agent twice side by side, `registry.format = "json"` and `"xml"`, against
//! the same server. Tests that start JVMs hold [`crate::spring::JVM_LOCK`] so they run one at a time.
//! Timing bounds are "one refresh plus the server's response-cache interval" with a margin
//! for a loaded 2-core machine; each wait starts when the server's own registry (read past its
//! cache) shows the change.

use std::time::{Duration, Instant};

use crate::spring::{RealEureka, SpringService, APP, CACHE_INTERVAL};
use crate::support::TestAgent;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The agents' refresh interval.
pub(crate) const REFRESH: Duration = Duration::from_millis(300);
/// Slack on top of refresh + cache interval: request times and a busy 2-core machine.
pub(crate) const MARGIN: Duration = Duration::from_secs(2);

const FORMATS: [&str; 2] = ["json", "xml"];

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) fn registry_section(eureka: &RealEureka, format: &str) -> String {
    format!(
        "[registry]\neureka_urls = [{:?}]\nformat = {format:?}\nrefresh_interval = \"{}ms\"\nconnect_timeout = \"1s\"\nread_timeout = \"3s\"\n",
        eureka.service_url(),
        REFRESH.as_millis()
    )
}

/// One agent per registry format, both reading `eureka`.
async fn agents(eureka: &RealEureka, extra: &str) -> Vec<(&'static str, TestAgent)> {
    let mut out = Vec::new();
    for format in FORMATS {
        let agent = TestAgent::start_with(
            &registry_section(eureka, format),
            extra,
            tempfile::tempdir().unwrap(),
        )
        .await;
        out.push((format, agent));
    }
    out
}

/// `instanceId → status` of the DISCOVERABLECLIENT instances in the agent's routing table
/// (`GET /application/routes`), sorted.
pub(crate) async fn routed(agent: &TestAgent) -> Vec<(String, String)> {
    let (status, routes) = agent.get_json("/application/routes").await;
    assert_eq!(status, 200);
    let mut out: Vec<(String, String)> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["serviceId"] == APP)
        .flat_map(|s| s["instances"].as_array().unwrap().clone())
        .map(|i| {
            (
                i["instanceId"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits until every agent's routing table is `want`, up to `limit`.
pub(crate) async fn wait_routed(
    agents: &[(&str, TestAgent)],
    want: &[(&str, &str)],
    limit: Duration,
) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(i, s)| (i.to_string(), s.to_string()))
        .collect();
    let start = Instant::now();
    for (format, agent) in agents {
        loop {
            let got = routed(agent).await;
            if got == want {
                break;
            }
            assert!(
                start.elapsed() < limit,
                "{format} agent: routes {got:?}, wanted {want:?} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The value of one sample of the agent's `/application/prometheus`, 0 when absent.
pub(crate) async fn metric(agent: &TestAgent, sample: &str) -> u64 {
    let (_, _, text) = agent.get("/application/prometheus", "").await;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn fetches(agent: &TestAgent, outcome: &str) -> u64 {
    metric(
        agent,
        &format!("wsrelay_registry_fetches_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

pub(crate) async fn next_text(ws: &mut Ws) -> String {
    // Generous: a cold Spring JVM's first handshakes on a busy 2-core machine take seconds.
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Asks the service what it received (`info`): instance id, path, query, authorization,
/// subprotocol.
pub(crate) async fn info(ws: &mut Ws) -> Value {
    ws.send(Message::text("info")).await.unwrap();
    serde_json::from_str(&next_text(ws).await).unwrap()
}

pub(crate) async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next_text(ws).await, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spring_instances_are_routed_in_both_url_forms_with_auth_subprotocol_and_query() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    let _svcs = SpringService::start_all(&eureka, &["dc-a", "dc-b"]).await;
    let agents = agents(&eureka, "").await;
    wait_routed(
        &agents,
        &[("dc-a", "UP"), ("dc-b", "UP")],
        REFRESH + CACHE_INTERVAL + MARGIN,
    )
    .await;

    for (format, agent) in &agents {
        // Round robin reaches both instances, through both URL forms.
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..4 {
            let path = if n % 2 == 0 {
                "/ws/v1/discoverableclient/echo"
            } else {
                "/discoverableclient/ws/v1/echo"
            };
            let (mut ws, _) = agent.connect(path, &[]).await.unwrap();
            let got = info(&mut ws).await;
            assert_eq!(
                got["path"], "/discoverableclient/ws/echo",
                "{format} {path}"
            );
            seen.insert(got["instanceId"].as_str().unwrap().to_string());
            echo(&mut ws, "hello").await;
            ws.close(None).await.unwrap();
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["dc-a", "dc-b"],
            "{format}: round robin"
        );

        // Basic auth, an offered subprotocol and a query string reach the service intact.
        let (mut ws, response) = agent
            .connect(
                "/ws/v1/discoverableclient/room/7?user=al%20ice&x=1",
                &[
                    ("Authorization", "Basic dXNlcjpzZWNyZXQ="),
                    ("Sec-WebSocket-Protocol", "unknown.v9, v12.stomp"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("v12.stomp"),
            "{format}: the service's choice reaches the client"
        );
        let got = info(&mut ws).await;
        assert_eq!(got["path"], "/discoverableclient/ws/room/7", "{format}");
        assert_eq!(got["query"], "user=al%20ice&x=1", "{format}");
        assert_eq!(got["authorization"], "Basic dXNlcjpzZWNyZXQ=", "{format}");
        assert_eq!(got["subprotocol"], "v12.stomp", "{format}");
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => assert_eq!(&b[..], &[0u8, 1, 2, 255]),
            other => panic!("{format}: expected the binary echo, got {other:?}"),
        }
        // A close code chosen by the service reaches the client.
        ws.send(Message::text("close:4001")).await.unwrap();
        let (code, _) = crate::support::read_close(&mut ws).await.unwrap();
        assert_eq!(code, 4001, "{format}");
    }

    // An operator adds a route through the metadata REST API: the server registers the instance
    // again (the delta says ADDED) and the route reaches the agents without a full fetch.
    let dirty = eureka.instance(APP, "dc-a").await.unwrap()["lastDirtyTimestamp"].clone();
    let answer = eureka
        .request(
            "PUT",
            "apps/DISCOVERABLECLIENT/dc-a/metadata?apiml.routes.ws_v2.gatewayUrl=ws/v2&apiml.routes.ws_v2.serviceUrl=/discoverableclient/ws",
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let now = eureka.instance(APP, "dc-a").await.unwrap();
    assert_eq!(now["metadata"]["apiml.routes.ws_v2.gatewayUrl"], "ws/v2");
    assert_eq!(
        now["lastDirtyTimestamp"], dirty,
        "the client's dirty timestamp stays"
    );
    let start = Instant::now();
    for (format, agent) in &agents {
        loop {
            let (_, routes) = agent.get_json("/application/routes").await;
            if routes.to_string().contains("\"ws/v2\"") {
                break;
            }
            assert!(
                start.elapsed() < REFRESH + CACHE_INTERVAL + MARGIN,
                "{format}: no ws/v2 route: {routes}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut ws, _) = agent
            .connect("/ws/v2/discoverableclient/echo", &[])
            .await
            .unwrap();
        echo(&mut ws, "v2").await;
        assert_eq!(fetches(agent, "full").await, 1, "{format}");
        assert_eq!(fetches(agent, "reconcile").await, 0, "{format}");
    }
}

/// Regression (bugs 1 and 2 of the real-Eureka issue): a real server keeps `status` DOWN while
/// an override says UP. The reconcile hash counts `status` (`Applications.populateInstanceCountMap`),
/// so the agent's hash matches the server's and no refresh turns into a full fetch; and the
/// DOWN instance is not routed (`Application._shuffleAndStoreInstances` filters on `status`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_full_fetch_over_many_refreshes_also_while_an_instance_is_down_with_an_up_override() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    let svcs = SpringService::start_all(&eureka, &["dc-a", "dc-b"]).await;
    let agents = agents(&eureka, "").await;
    let bound = REFRESH + CACHE_INTERVAL + MARGIN;
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "UP")], bound).await;

    // dc-b: own status DOWN; an operator overrides it UP through the REST API (status UP,
    // override UP); the instance reports UP and then DOWN again: the server keeps the override
    // and resolves `status` to DOWN (`DownOrStartingRule`).
    let b = &svcs[1];
    let long = Duration::from_secs(20);
    b.set_own_status("DOWN").await;
    eureka
        .wait_status(APP, "dc-b", Some(("DOWN", "UNKNOWN")), long)
        .await;
    assert_eq!(eureka.put_override(APP, "dc-b", "UP").await, 200);
    eureka
        .wait_status(APP, "dc-b", Some(("UP", "UP")), long)
        .await;
    b.set_own_status("UP").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.set_own_status("DOWN").await;
    eureka
        .wait_status(APP, "dc-b", Some(("DOWN", "UP")), long)
        .await;

    // At least ten refreshes after the server shows the state (and its cache has caught up).
    tokio::time::sleep(REFRESH * 12 + CACHE_INTERVAL).await;
    for (format, agent) in &agents {
        let full = fetches(agent, "full").await;
        let delta = fetches(agent, "delta").await;
        let reconcile = fetches(agent, "reconcile").await;
        assert_eq!(
            (full, reconcile),
            (1, 0),
            "{format}: exactly one full fetch (the first) and no hash mismatch, {delta} deltas"
        );
        assert!(delta >= 10, "{format}: {delta} deltas");
    }
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "DOWN")], bound).await;
    for (format, agent) in &agents {
        assert_eq!(
            metric(agent, "wsrelay_registry_instances{status=\"DOWN\"}").await,
            1,
            "{format}"
        );
        // Every session goes to dc-a.
        for _ in 0..3 {
            let (mut ws, _) = agent
                .connect("/ws/v1/discoverableclient/echo", &[])
                .await
                .unwrap();
            assert_eq!(info(&mut ws).await["instanceId"], "dc-a", "{format}");
            ws.close(None).await.unwrap();
        }
    }
}

/// Status changes made through the real server reach the routing table within one refresh plus
/// the server's cache interval, and routing follows `status`: an OUT_OF_SERVICE override and
/// its removal, the instance's own DOWN, a graceful stop (the client cancels), and eviction
/// after a SIGKILL (2 s lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_through_the_real_server_reach_routing_within_a_refresh() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    let mut svcs = SpringService::start_all(&eureka, &["dc-a", "dc-b"]).await;
    let agents = agents(&eureka, "").await;
    let bound = REFRESH + CACHE_INTERVAL + MARGIN;
    let long = Duration::from_secs(30);
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "UP")], bound).await;

    // An operator takes dc-b out of service.
    assert_eq!(
        eureka.put_override(APP, "dc-b", "OUT_OF_SERVICE").await,
        200
    );
    eureka
        .wait_status(
            APP,
            "dc-b",
            Some(("OUT_OF_SERVICE", "OUT_OF_SERVICE")),
            long,
        )
        .await;
    wait_routed(
        &agents,
        &[("dc-a", "UP"), ("dc-b", "OUT_OF_SERVICE")],
        bound,
    )
    .await;
    for (format, agent) in &agents {
        let (mut ws, _) = agent
            .connect("/ws/v1/discoverableclient/echo", &[])
            .await
            .unwrap();
        assert_eq!(info(&mut ws).await["instanceId"], "dc-a", "{format}");
    }

    // The override is removed (Spring's CANCEL_OVERRIDE): the server answers the next heartbeat
    // 404, the client registers again, UP.
    assert_eq!(eureka.delete_override(APP, "dc-b").await, 200);
    eureka
        .wait_status(APP, "dc-b", Some(("UP", "UNKNOWN")), long)
        .await;
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "UP")], bound).await;

    // The instance's own status DOWN (as a failing health check sets it).
    svcs[1].set_own_status("DOWN").await;
    eureka
        .wait_status(APP, "dc-b", Some(("DOWN", "UNKNOWN")), long)
        .await;
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "DOWN")], bound).await;
    svcs[1].set_own_status("UP").await;
    eureka
        .wait_status(APP, "dc-b", Some(("UP", "UNKNOWN")), long)
        .await;
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "UP")], bound).await;

    // A graceful stop: Spring's client cancels the lease.
    svcs[1].jvm.stop().await;
    eureka.wait_status(APP, "dc-b", None, long).await;
    wait_routed(&agents, &[("dc-a", "UP")], bound).await;

    // SIGKILL: no cancel; the server evicts the expired lease.
    svcs[0].jvm.kill();
    eureka.wait_status(APP, "dc-a", None, long).await;
    wait_routed(&agents, &[], bound).await;
    for (format, agent) in &agents {
        let e = agent
            .connect("/ws/v1/discoverableclient/echo", &[])
            .await
            .unwrap_err();
        let (status, _) = crate::support::refused(e);
        assert!(status == 404 || status == 503, "{format}: {status}");
        assert_eq!(fetches(agent, "reconcile").await, 0, "{format}");
    }
}

/// A one-request-per-connection HTTP forwarder to the Eureka server that drops every `DELETE`
/// without an answer (a cancel that fails), and forwards everything else with
/// `Connection: close`. Returns its `http://127.0.0.1:{port}/eureka/` URL.
async fn forwarder_dropping_cancels(eureka_port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = client.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                if head.starts_with("DELETE ") {
                    return; // dropped: no answer at all
                }
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = client.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = head
                    .lines()
                    .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                    .collect::<Vec<_>>()
                    .join("\r\n");
                let Ok(mut server) =
                    tokio::net::TcpStream::connect(("127.0.0.1", eureka_port)).await
                else {
                    return;
                };
                let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
                request.extend_from_slice(&buf[head_end..head_end + length]);
                if server.write_all(&request).await.is_err() {
                    return;
                }
                let mut response = Vec::new();
                let _ = server.read_to_end(&mut response).await;
                // Tell the client not to reuse the connection either.
                if let Some(p) = response.windows(2).position(|w| w == b"\r\n") {
                    response.splice(p + 2..p + 2, b"Connection: close\r\n".iter().copied());
                }
                let _ = client.write_all(&response).await;
                let _ = client.shutdown().await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/eureka/")
}

/// Waits until every session each agent lists (`/application/websockets`) is on `instance`.
async fn wait_all_on(agents: &[(&str, TestAgent)], instance: &str) {
    let start = Instant::now();
    for (format, agent) in agents {
        loop {
            let (status, list) = agent.get_json("/application/websockets").await;
            assert_eq!(status, 200);
            let on: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["instanceId"].as_str().unwrap_or(""))
                .collect();
            if !on.is_empty() && on.iter().all(|i| *i == instance) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{format}: sessions on {on:?}, not all on {instance}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const SELF: &str = "WSRELAY";
const SELF_ID: &str = "gw-it:wsrelay:10010";

fn self_registration(eureka_url: &str) -> String {
    format!(
        "[registry]\neureka_urls = [{eureka_url:?}]\nrefresh_interval = \"500ms\"\nconnect_timeout = \"1s\"\nread_timeout = \"3s\"\n"
    )
}

const INSTANCE: &str = "[eureka.instance]\ninstance_id = \"gw-it:wsrelay:10010\"\nhost_name = \"localhost\"\nrenewal_interval = \"1s\"\nlease_duration = \"2s\"\n[eureka.instance.metadata]\n\"apiml.service.title\" = \"WebSocket relay\"\n";

/// An agent registering itself through `eureka_url`, once the server lists it UP.
async fn start_registered(eureka: &RealEureka, eureka_url: &str) -> TestAgent {
    let agent = TestAgent::start_with(
        &self_registration(eureka_url),
        INSTANCE,
        tempfile::tempdir().unwrap(),
    )
    .await;
    eureka
        .wait_status(
            SELF,
            SELF_ID,
            Some(("UP", "UNKNOWN")),
            Duration::from_secs(20),
        )
        .await;
    agent
}

/// Stops `agent` as SIGTERM would and waits for its drain.
async fn stop(agent: TestAgent) {
    agent.token.cancel();
    assert!(agent.agent.drained(Duration::from_secs(10)).await);
}

/// Self-registration against the real server: the instance has the fields a Netflix client
/// parses, heartbeats keep it past several lease durations, a stop removes it, and a restart
/// with the same id comes back UP, also after a cancel that failed (regression, bug 3: the
/// drain used to set an OUT_OF_SERVICE override that `OverrideExistsRule` kept after a failed
/// cancel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_registration_in_the_real_server_heartbeats_stops_and_restarts() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    let long = Duration::from_secs(20);
    let agent = TestAgent::start_with(
        &self_registration(&eureka.service_url()),
        INSTANCE,
        tempfile::tempdir().unwrap(),
    )
    .await;
    let port = agent.agent.local_addr.port();
    eureka
        .wait_status(SELF, SELF_ID, Some(("UP", "UNKNOWN")), long)
        .await;

    // The application as a Netflix client fetches it (JSON; XML below).
    let app = eureka.request("GET", "apps/WSRELAY", None).await.unwrap();
    assert_eq!(app.status, 200);
    let app: Value = serde_json::from_str(&app.body).unwrap();
    assert_eq!(app["application"]["name"], SELF);
    let i = &app["application"]["instance"][0];
    assert_eq!(i["instanceId"], SELF_ID);
    assert_eq!(i["app"], SELF);
    assert_eq!(i["hostName"], "localhost");
    assert_eq!(i["ipAddr"], "127.0.0.1");
    assert_eq!(i["status"], "UP");
    assert_eq!(i["overriddenStatus"], "UNKNOWN");
    assert_eq!(i["securePort"]["$"], port);
    assert_eq!(i["securePort"]["@enabled"], "true");
    assert_eq!(i["port"]["@enabled"], "false");
    assert_eq!(
        i["dataCenterInfo"]["@class"],
        "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
    );
    assert_eq!(i["dataCenterInfo"]["name"], "MyOwn");
    assert_eq!(i["leaseInfo"]["renewalIntervalInSecs"], 1);
    assert_eq!(i["leaseInfo"]["durationInSecs"], 2);
    assert_eq!(i["vipAddress"], "wsrelay");
    assert_eq!(i["secureVipAddress"], "wsrelay");
    assert_eq!(
        i["healthCheckUrl"],
        format!("https://localhost:{port}/application/health")
    );
    assert_eq!(i["metadata"]["apiml.service.title"], "WebSocket relay");
    let registered_at = i["leaseInfo"]["registrationTimestamp"].as_i64().unwrap();
    assert!(registered_at > 0);
    // The server's XML rendering decodes with the agent's own decoder.
    let xml = eureka
        .request("GET", "apps", Some("application/xml"))
        .await
        .unwrap();
    assert_eq!(xml.status, 200);
    let snapshot = wsrelay::registry::xml::decode(xml.body.as_bytes()).unwrap();
    let me = snapshot
        .applications
        .iter()
        .find(|a| a.name == SELF)
        .and_then(|a| a.instances.first())
        .expect("WSRELAY in the XML registry");
    assert_eq!(me.instance_id, SELF_ID);
    assert_eq!(me.status, wsrelay::registry::Status::Up);
    assert_eq!((me.secure_port.port, me.secure_port.enabled), (port, true));

    // Heartbeats keep the lease well past 2 × its duration plus the eviction interval.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let i = eureka
        .instance(SELF, SELF_ID)
        .await
        .expect("still registered");
    assert_eq!(i["status"], "UP");
    assert!(i["leaseInfo"]["lastRenewalTimestamp"].as_i64().unwrap() > registered_at);

    // A stop: registered DOWN, then cancelled.
    agent.token.cancel();
    assert!(agent.agent.drained(Duration::from_secs(10)).await);
    eureka.wait_status(SELF, SELF_ID, None, long).await;
    drop(agent);

    // A restart with the same id comes back UP, and a stop removes it again.
    let agent = start_registered(&eureka, &eureka.service_url()).await;
    stop(agent).await;
    eureka.wait_status(SELF, SELF_ID, None, long).await;

    // A stop whose cancel fails (the DELETE gets no answer): the lease stays, DOWN, with no
    // override.
    let via = forwarder_dropping_cancels(eureka.port).await;
    stop(start_registered(&eureka, &via).await).await;
    let left = eureka.status_of(SELF, SELF_ID).await;
    assert!(left.is_some(), "the lease outlives the failed cancel");
    // Restarted before the lease expires, the agent comes back UP.
    let agent = start_registered(&eureka, &eureka.service_url()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eureka
        .wait_status(
            SELF,
            SELF_ID,
            Some(("UP", "UNKNOWN")),
            Duration::from_secs(1),
        )
        .await;
    // What the failed stop had left: DOWN, its own status, no override.
    assert_eq!(
        left,
        Some(("DOWN".to_string(), "UNKNOWN".to_string())),
        "after the failed cancel"
    );
    drop(agent);
}

/// Session failover with real Spring instances: sessions on an instance that stops gracefully
/// (Tomcat closes them with 1001) move to the other one; sessions on an instance that is
/// SIGKILLed (the TCP connection just ends) move to a third one; every session keeps echoing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_move_to_a_live_instance_when_one_stops_and_one_is_killed() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    let mut svcs = SpringService::start_all(&eureka, &["dc-a", "dc-b"]).await;
    let agents = agents(
        &eureka,
        "[failover]\nmode = \"reconnect\"\ndeadline = \"30s\"\n",
    )
    .await;
    let bound = REFRESH + CACHE_INTERVAL + MARGIN;
    wait_routed(&agents, &[("dc-a", "UP"), ("dc-b", "UP")], bound).await;

    let mut sessions: Vec<(&str, Ws)> = Vec::new();
    for (format, agent) in &agents {
        for _ in 0..4 {
            let (ws, _) = agent
                .connect("/ws/v1/discoverableclient/echo", &[])
                .await
                .unwrap();
            sessions.push((format, ws));
        }
    }
    let mut on = std::collections::BTreeMap::<String, usize>::new();
    for (_, ws) in &mut sessions {
        *on.entry(info(ws).await["instanceId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(on.get("dc-a"), Some(&4), "{on:?}");
    assert_eq!(on.get("dc-b"), Some(&4), "{on:?}");

    // dc-a stops gracefully: its sessions move to dc-b. A message in flight to an instance as
    // it dies is lost (at most once, README "Session failover"), so the client speaks again
    // once the agent lists the session on its new instance.
    svcs[0].jvm.stop().await;
    wait_all_on(&agents, "dc-b").await;
    for (n, (format, ws)) in sessions.iter_mut().enumerate() {
        echo(ws, &format!("after stop {n}")).await;
        assert_eq!(info(ws).await["instanceId"], "dc-b", "{format} session {n}");
    }

    // A third instance comes up; dc-b is SIGKILLed: every session moves to dc-c.
    let mut c = SpringService::spawn(&eureka, "dc-c");
    c.wait_up(&eureka).await;
    c.warm_up().await;
    wait_routed(&agents, &[("dc-b", "UP"), ("dc-c", "UP")], bound).await;
    svcs[1].jvm.kill();
    wait_all_on(&agents, "dc-c").await;
    for (n, (format, ws)) in sessions.iter_mut().enumerate() {
        echo(ws, &format!("after kill {n}")).await;
        assert_eq!(info(ws).await["instanceId"], "dc-c", "{format} session {n}");
    }
    for (format, agent) in &agents {
        let switched = metric(
            agent,
            "wsrelay_session_failovers_total{service=\"DISCOVERABLECLIENT\",result=\"switched\"}",
        )
        .await;
        assert_eq!(switched, 6, "{format}: 2 moved from dc-a, then 4 from dc-b");
    }
    for (_, ws) in &mut sessions {
        ws.close(None).await.unwrap();
    }
}

/// The real server's start-up window: a standalone server that synced no peer refuses reads
/// with 403 for `wait-time-in-ms-when-sync-empty` (`PeerAwareInstanceRegistryImpl.shouldAllowAccess`;
/// Spring Cloud opens at once unless `default-open-for-traffic-count` is 0). The agent keeps
/// retrying, routes nothing meanwhile, and routes as soon as the window ends, without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_403_window_is_retried_until_the_server_serves() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let window = Duration::from_secs(40);
    let eureka = RealEureka::start_with(
        &[
            "--eureka.instance.registry.default-open-for-traffic-count=0",
            &format!(
                "--eureka.server.wait-time-in-ms-when-sync-empty={}",
                window.as_millis()
            ),
        ],
        &[403],
    )
    .await;
    let opened_by = Instant::now() + window;
    let mut svc = SpringService::spawn(&eureka, "dc-a");
    // Registration is allowed during the window; reads are not.
    let agents = agents(&eureka, "").await;
    let mut refused = false;
    while Instant::now() + Duration::from_secs(2) < opened_by {
        let a = eureka.request("GET", "apps", None).await.unwrap();
        if a.status == 403 {
            refused = true;
            for (format, agent) in &agents {
                assert_eq!(
                    routed(agent).await,
                    Vec::<(String, String)>::new(),
                    "{format}"
                );
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refused,
        "the server never refused a read: no start-up window to test"
    );
    svc.wait_up(&eureka).await;
    let left = opened_by.saturating_duration_since(Instant::now());
    wait_routed(
        &agents,
        &[("dc-a", "UP")],
        left + REFRESH + CACHE_INTERVAL + MARGIN,
    )
    .await;
    for (format, agent) in &agents {
        assert!(
            fetches(agent, "error").await >= 1,
            "{format}: the 403s were counted"
        );
        let (mut ws, _) = agent
            .connect("/ws/v1/discoverableclient/echo", &[])
            .await
            .unwrap();
        echo(&mut ws, "after the window").await;
    }
}
