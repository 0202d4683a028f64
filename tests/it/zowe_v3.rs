//! What Zowe API ML v3 users run (issue 16), against the real thing: the Spring Cloud Netflix
//! Eureka server and Spring Boot WebSocket services registered by the real Eureka client
//! (`interop/`). Upgrades on every route, `X-InstanceId`, sticky sessions, the Zowe v2
//! shape of `/application/websockets`, and the `x509` scheme's certificate headers (judged by
//! what Java itself reads from the certificate), each checked on what the Spring service saw.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use serde_json::Value;

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

/// A client CA and a client certificate with a subject that exercises Java's DN writing (a
/// comma in a value, several attribute types, an e-mail address, an unknown OID); PEMs.
fn client_ca_and_cert() -> (String, String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "CZ");
    dn.push(rcgen::DnType::StateOrProvinceName, "Praha");
    dn.push(rcgen::DnType::LocalityName, "Praha 1");
    dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
    dn.push(rcgen::DnType::OrganizationalUnitName, "Mainframe  Ops");
    dn.push(
        rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
        rcgen::DnValue::Ia5String("alice@example.com".try_into().unwrap()),
    );
    dn.push(
        rcgen::DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
        "custom",
    );
    dn.push(rcgen::DnType::CommonName, "Alice Smith");
    params.distinguished_name = dn;
    crate::certs::ca_and_client_cert(params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x509_scheme_gets_the_headers_java_makes_of_the_verified_client_certificate() {
    use base64::Engine;
    let _jvms = crate::spring::JVM_LOCK.lock().await;
    let eureka = RealEureka::start().await;
    // One service on the x509 scheme, one without it.
    let mut x509 = SpringService::spawn_with(
        &eureka,
        "x5-a",
        &[
            "--spring.application.name=x509client",
            "--eureka.instance.metadata-map.apiml.authentication.scheme=x509",
        ],
    );
    let mut plain = SpringService::spawn(&eureka, "dc-a");
    for s in [&mut x509, &mut plain] {
        if s.instance_id == "x5-a" {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while eureka.status_of("X509CLIENT", "x5-a").await.map(|s| s.0) != Some("UP".into()) {
                s.jvm.assert_running();
                assert!(std::time::Instant::now() < deadline, "{}", s.jvm.log_tail());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            s.wait_up(&eureka).await;
        }
        s.warm_up().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert_pem, key_pem) = client_ca_and_cert();
    let ca_path = dir.path().join("client-ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    let agent = TestAgent::start_with_tls(
        &format!(
            "client_ca = {:?}\nclient_auth = \"optional\"\n",
            ca_path.display().to_string()
        ),
        &registry_section(&eureka, "json"),
        "",
        dir,
    )
    .await;
    let agents = [("json", agent)];
    wait_routed(
        &agents,
        &[("dc-a", "UP")],
        REFRESH + CACHE_INTERVAL + MARGIN,
    )
    .await;
    let [(_, agent)] = &agents;
    let with_cert = agent.cert.client_config_with(&cert_pem, &key_pem);
    let forged = [
        ("X-Certificate-CommonName", "root"),
        ("X-Certificate-DistinguishedName", "CN=root"),
        ("X-Zowe-Auth-Failure", "forged"),
    ];
    let leaf_der = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let mut got = None;
    let deadline = std::time::Instant::now() + REFRESH + CACHE_INTERVAL + MARGIN;
    while got.is_none() {
        match agent
            .connect_with("/x509client/ws/v1/echo", &forged[..2], with_cert.clone())
            .await
        {
            Ok((mut ws, _)) => got = Some(info(&mut ws).await),
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "x509client not routed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let got = got.unwrap();
    // The headers are the certificate's, not the client's forgeries, and Java reads the same
    // name from the certificate the service received.
    assert_eq!(
        got["certificatePublic"],
        base64::engine::general_purpose::STANDARD.encode(leaf_der.as_ref()),
        "{got}"
    );
    assert_eq!(
        got["certificateDistinguishedName"], got["javaDistinguishedName"],
        "{got}"
    );
    assert_eq!(got["certificateCommonName"], got["javaCommonName"], "{got}");
    assert_eq!(got["certificateCommonName"], "Alice Smith", "{got}");
    assert!(
        got["javaDistinguishedName"]
            .as_str()
            .unwrap()
            .starts_with("CN=Alice Smith, "),
        "{got}"
    );
    assert_eq!(got["zoweAuthFailure"], Value::Null, "{got}");

    // Without a certificate the x509 service is told why, as Zowe does, and forgeries still
    // do not pass.
    let (mut ws, _) = agent
        .connect("/x509client/ws/v1/echo", &forged)
        .await
        .unwrap();
    let got = info(&mut ws).await;
    assert_eq!(got["certificateCommonName"], Value::Null, "{got}");
    assert_eq!(got["certificatePublic"], Value::Null, "{got}");
    assert_eq!(
        got["zoweAuthFailure"],
        "ZWEAG167E No client certificate provided in the request"
    );
    // A service without the scheme gets no certificate headers even with a certificate.
    let (mut ws, _) = agent
        .connect_with("/discoverableclient/ws/v1/echo", &forged, with_cert)
        .await
        .unwrap();
    let got = info(&mut ws).await;
    for key in [
        "certificatePublic",
        "certificateCommonName",
        "certificateDistinguishedName",
        "zoweAuthFailure",
    ] {
        assert_eq!(got[key], Value::Null, "{key}: {got}");
    }
}
