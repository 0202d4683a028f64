//! What Zowe API ML v3 users run (issue 16), against the real thing: the Spring Cloud Netflix
//! Eureka server and Spring Boot WebSocket services registered by the real Eureka client
//! (`interop/`). Upgrades on every route, `X-InstanceId`, sticky sessions, and the Zowe v2
//! shape of `/application/websockets`, each checked on what the Spring service itself saw.

use std::time::Duration;

use crate::real_eureka::{info, registry_section, wait_routed, MARGIN, REFRESH};
use crate::spring::{RealEureka, SpringService, CACHE_INTERVAL};
use crate::support::{refused, TestAgent};

/// One agent reading `eureka` as JSON with `extra` TOML.
async fn agent(eureka: &RealEureka, extra: &str) -> TestAgent {
    TestAgent::start_with(
        &registry_section(eureka, "json"),
        extra,
        tempfile::tempdir().unwrap(),
    )
    .await
}

/// The instance the service says a session on `path` with `headers` reached.
async fn instance_of(agent: &TestAgent, path: &str, headers: &[(&str, &str)]) -> String {
    let (mut ws, _) = agent.connect(path, headers).await.unwrap();
    let got = info(&mut ws).await;
    ws.close(None).await.unwrap();
    got["instanceId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_routing_instance_choice_and_the_sessions_endpoint_with_real_spring_services() {
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    let svcs = SpringService::start_all(&eureka, &["dc-a", "dc-b"]).await;
    let every = agent(
        &eureka,
        "[routing]\nwebsocket_routes = \"all\"\nsticky = \"cookie:apimlAuthenticationToken\"\n",
    )
    .await;
    let default = agent(&eureka, "").await;
    let agents = [("all", every), ("default", default)];
    let up = [("dc-a", "UP"), ("dc-b", "UP")];
    wait_routed(&agents, &up, REFRESH + CACHE_INTERVAL + MARGIN).await;
    let [(_, every), (_, default)] = &agents;

    // Item 2: the REST route api/v1 takes upgrades with `all`, in both URL forms; by default
    // it is 404 and the ws route still works.
    for path in [
        "/discoverableclient/api/v1/echo?x=1",
        "/api/v1/discoverableclient/echo?x=1",
    ] {
        let (mut ws, _) = every.connect(path, &[]).await.unwrap();
        let got = info(&mut ws).await;
        assert_eq!(got["path"], "/discoverableclient/api/v1/echo", "{path}");
        assert_eq!(got["query"], "x=1", "{path}");
        ws.close(None).await.unwrap();
        let (status, body) = refused(default.connect(path, &[]).await.unwrap_err());
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (mut ws, _) = every
        .connect("/discoverableclient/ws/v1/echo", &[])
        .await
        .unwrap();
    assert_eq!(info(&mut ws).await["path"], "/discoverableclient/ws/echo");

    // Item 6: the session as Zowe v2's WebSocketActuatorEndpoint lists it; the service side
    // is where the Spring service saw the session come from.
    let got = info(&mut ws).await;
    let (_, sessions) = every.get_json("/application/websockets").await;
    let s = &sessions[0];
    let port = every.agent.local_addr.port();
    assert_eq!(
        s["gatewayPath"],
        format!("wss://localhost:{port}/discoverableclient/ws/v1/echo")
    );
    assert_eq!(s["serviceSessionId"], got["remoteAddress"], "{s} {got}");
    assert!(s["clientAddress"]
        .as_str()
        .unwrap()
        .starts_with("/127.0.0.1:"));
    assert_ne!(s["clientAddress"], s["serviceSessionId"]);
    ws.close(None).await.unwrap();

    // Item 3: X-InstanceId picks the instance, on every session; unknown is 404.
    for agent in [every, default] {
        for _ in 0..4 {
            let id = instance_of(
                agent,
                "/ws/v1/discoverableclient/x",
                &[("X-InstanceId", "dc-b")],
            )
            .await;
            assert_eq!(id, "dc-b");
        }
        let (status, body) = refused(
            agent
                .connect("/ws/v1/discoverableclient/x", &[("X-InstanceId", "dc-z")])
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 404, "{body}");
        assert!(body["message"].as_str().unwrap().contains("dc-z"), "{body}");
    }

    // Sticky: one user's sessions stay on one instance, where the round robin alone
    // alternates (as the agent without `routing.sticky` shows).
    let alice = [("Cookie", "theme=dark; apimlAuthenticationToken=alice-token")];
    let mut plain = std::collections::BTreeSet::new();
    for _ in 0..4 {
        plain.insert(instance_of(default, "/ws/v1/discoverableclient/x", &alice).await);
    }
    assert_eq!(plain.len(), 2, "round robin without routing.sticky");
    let first = instance_of(every, "/ws/v1/discoverableclient/x", &alice).await;
    for _ in 0..5 {
        let id = instance_of(every, "/ws/v1/discoverableclient/x", &alice).await;
        assert_eq!(id, first, "alice moved");
    }

    // The sticky instance goes DOWN (its own status, through the real server): alice moves to
    // the live one and X-InstanceId for the DOWN one is 503.
    let (stuck, other) = if first == "dc-a" {
        (&svcs[0], "dc-b")
    } else {
        (&svcs[1], "dc-a")
    };
    stuck.set_own_status("DOWN").await;
    let want = if first == "dc-a" {
        [("dc-a", "DOWN"), ("dc-b", "UP")]
    } else {
        [("dc-a", "UP"), ("dc-b", "DOWN")]
    };
    eureka
        .wait_status(
            crate::spring::APP,
            &first,
            Some(("DOWN", "UNKNOWN")),
            Duration::from_secs(30),
        )
        .await;
    wait_routed(&agents, &want, REFRESH + CACHE_INTERVAL + MARGIN).await;
    for _ in 0..3 {
        assert_eq!(
            instance_of(every, "/ws/v1/discoverableclient/x", &alice).await,
            other
        );
    }
    let (status, body) = refused(
        every
            .connect("/ws/v1/discoverableclient/x", &[("X-InstanceId", &first)])
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("DOWN"), "{body}");

    // Back UP: alice stays where she is now (the sticky table follows her last instance).
    stuck.set_own_status("UP").await;
    wait_routed(
        &agents,
        &up,
        REFRESH + CACHE_INTERVAL + MARGIN + CACHE_INTERVAL,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            instance_of(every, "/ws/v1/discoverableclient/x", &alice).await,
            other
        );
    }
}
