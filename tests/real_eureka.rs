//! wsrelay against the real thing: the Spring Cloud Netflix Eureka server and Spring Boot
//! WebSocket services registered by the real Eureka client (`interop/`, built by
//! `bash scripts/test.sh`), as child processes on loopback ports chosen at run time.
//!
//! Every test runs the agent twice side by side, `registry.format = "json"` and `"xml"`, against
//! the same server. Tests that start JVMs hold [`spring::JVM_LOCK`] so they run one at a time.
//! Timing bounds are "one refresh plus the server's response-cache interval" with a margin
//! for a loaded 2-core machine; each wait starts when the server's own registry (read past its
//! cache) shows the change.

#[path = "support/spring.rs"]
mod spring;
mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use spring::{RealEureka, SpringService, APP, CACHE_INTERVAL};
use support::TestAgent;
use tokio_tungstenite::tungstenite::Message;

/// The agents' refresh interval.
const REFRESH: Duration = Duration::from_millis(300);
/// Slack on top of refresh + cache interval: request times and a busy 2-core machine.
const MARGIN: Duration = Duration::from_secs(2);

const FORMATS: [&str; 2] = ["json", "xml"];

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn registry_section(eureka: &RealEureka, format: &str) -> String {
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
async fn routed(agent: &TestAgent) -> Vec<(String, String)> {
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
async fn wait_routed(agents: &[(&str, TestAgent)], want: &[(&str, &str)], limit: Duration) {
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
async fn metric(agent: &TestAgent, sample: &str) -> u64 {
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

async fn next_text(ws: &mut Ws) -> String {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Asks the service what it received (`info`): instance id, path, query, authorization,
/// subprotocol.
async fn info(ws: &mut Ws) -> Value {
    ws.send(Message::text("info")).await.unwrap();
    serde_json::from_str(&next_text(ws).await).unwrap()
}

async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next_text(ws).await, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spring_instances_are_routed_in_both_url_forms_with_auth_subprotocol_and_query() {
    let _jvms = spring::JVM_LOCK.lock().await;
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
        let (code, _) = support::read_close(&mut ws).await.unwrap();
        assert_eq!(code, 4001, "{format}");
    }
}

/// Regression (bugs 1 and 2 of the real-Eureka issue): a real server keeps `status` DOWN while
/// an override says UP. The reconcile hash counts `status` (`Applications.populateInstanceCountMap`),
/// so the agent's hash matches the server's and no refresh turns into a full fetch; and the
/// DOWN instance is not routed (`Application._shuffleAndStoreInstances` filters on `status`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_full_fetch_over_many_refreshes_also_while_an_instance_is_down_with_an_up_override() {
    let _jvms = spring::JVM_LOCK.lock().await;
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
    let _jvms = spring::JVM_LOCK.lock().await;
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
        let (status, _) = support::refused(e);
        assert!(status == 404 || status == 503, "{format}: {status}");
        assert_eq!(fetches(agent, "reconcile").await, 0, "{format}");
    }
}
