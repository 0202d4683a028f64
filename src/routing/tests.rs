use super::*;
use crate::registry::{Application, Instance, PortInfo};

fn inst(
    id: &str,
    host: &str,
    port: u16,
    secure: bool,
    status: Status,
    routes: &[(&str, &str, &str)],
) -> Instance {
    let mut i = Instance {
        instance_id: id.into(),
        app: "SVC".into(),
        host_name: host.into(),
        status,
        port: PortInfo {
            port,
            enabled: !secure,
        },
        secure_port: PortInfo {
            port,
            enabled: secure,
        },
        ..Default::default()
    };
    for (n, g, s) in routes {
        i.metadata
            .insert(format!("apiml.routes.{n}.gatewayUrl").into(), (*g).into());
        i.metadata
            .insert(format!("apiml.routes.{n}.serviceUrl").into(), (*s).into());
    }
    i
}

fn table(apps: Vec<(&str, Vec<Instance>)>) -> RouteTable {
    RouteTable::build(&Snapshot {
        applications: apps
            .into_iter()
            .map(|(n, instances)| Application {
                name: n.into(),
                instances,
            })
            .collect(),
        ..Default::default()
    })
}

fn dc() -> RouteTable {
    table(vec![(
        "DISCOVERABLECLIENT",
        vec![inst(
            "a",
            "host-a",
            10012,
            false,
            Status::Up,
            &[
                ("ws_v1", "/ws/v1/", "/discoverableclient/ws"),
                ("ws_v1_deep", "ws/v1/deep", "deep/"),
                ("api_v1", "api/v1", "/discoverableclient/api/v1"),
            ],
        )],
    )])
}

#[test]
fn both_url_forms_resolve() {
    let t = dc();
    let r = t.resolve("/discoverableclient/ws/v1/echo", None).unwrap();
    assert_eq!(r.upstream_path, "/discoverableclient/ws/echo");
    let r = t
        .resolve("/ws/v1/discoverableclient/echo", Some("a=1&b=2"))
        .unwrap();
    assert_eq!(r.upstream_path, "/discoverableclient/ws/echo?a=1&b=2");
    assert_eq!(r.route().unwrap().name, "ws_v1");
}

#[test]
fn service_id_is_case_insensitive_and_no_path_maps_to_service_url() {
    let t = dc();
    assert_eq!(
        t.resolve("/DiscoverableClient/ws/v1", None)
            .unwrap()
            .upstream_path,
        "/discoverableclient/ws"
    );
    assert_eq!(
        t.resolve("/ws/v1/DISCOVERABLECLIENT", None)
            .unwrap()
            .upstream_path,
        "/discoverableclient/ws"
    );
    assert_eq!(
        t.resolve("/ws/v1/discoverableclient/", None)
            .unwrap()
            .upstream_path,
        "/discoverableclient/ws"
    );
}

#[test]
fn longest_gateway_url_wins_in_both_forms() {
    let t = dc();
    assert_eq!(
        t.resolve("/discoverableclient/ws/v1/deep/x", None)
            .unwrap()
            .upstream_path,
        "/deep/x"
    );
    assert_eq!(
        t.resolve("/ws/v1/deep/discoverableclient/x", None)
            .unwrap()
            .upstream_path,
        "/deep/x"
    );
    // "ws/v1/deeper" is not the segment "deep".
    assert_eq!(
        t.resolve("/discoverableclient/ws/v1/deeper", None)
            .unwrap()
            .upstream_path,
        "/discoverableclient/ws/deeper"
    );
}

#[test]
fn non_ws_routes_and_unknown_paths_are_not_found() {
    let t = dc();
    assert_eq!(
        t.resolve("/discoverableclient/api/v1/x", None).unwrap_err(),
        LookupError::NoRoute
    );
    assert_eq!(
        t.resolve("/other/ws/v1/x", None).unwrap_err(),
        LookupError::NoRoute
    );
    assert_eq!(t.resolve("/", None).unwrap_err(), LookupError::NoRoute);
    assert_eq!(t.resolve("", None).unwrap_err(), LookupError::NoRoute);
}

/// `routing.websocket_routes = "all"` (Zowe v3): REST routes take upgrades too, in both URL
/// forms, and a gatewayUrl of `/` takes everything under the service id.
#[test]
fn every_route_takes_upgrades_with_scope_all() {
    let snapshot = |routes: &[(&str, &str, &str)]| Snapshot {
        applications: vec![Application {
            name: "DISCOVERABLECLIENT".into(),
            instances: vec![inst("a", "host-a", 10012, false, Status::Up, routes)],
        }],
        ..Default::default()
    };
    let s = snapshot(&[
        ("ws_v1", "ws/v1", "/discoverableclient/ws"),
        ("api_v1", "api/v1", "/discoverableclient/api/v1"),
    ]);
    let ws = RouteTable::build_scoped(&s, RouteScope::WsPrefixed);
    let all = RouteTable::build_scoped(&s, RouteScope::All);
    assert_eq!(
        ws.resolve("/discoverableclient/api/v1/x", None)
            .unwrap_err(),
        LookupError::NoRoute
    );
    for p in [
        "/discoverableclient/api/v1/x",
        "/api/v1/discoverableclient/x",
    ] {
        assert_eq!(
            all.resolve(p, Some("q=1")).unwrap().upstream_path,
            "/discoverableclient/api/v1/x?q=1",
            "{p}"
        );
    }
    assert_eq!(
        all.resolve("/discoverableclient/ws/v1/y", None)
            .unwrap()
            .upstream_path,
        "/discoverableclient/ws/y"
    );
    // A REST-only service is routable with `all` only.
    let rest = snapshot(&[("api_v1", "api/v1", "/svc/api")]);
    assert!(RouteTable::build_scoped(&rest, RouteScope::WsPrefixed).is_empty());
    assert_eq!(RouteTable::build_scoped(&rest, RouteScope::All).len(), 1);
    // gatewayUrl "/" (the whole service): everything under /{serviceId}/.
    let root = RouteTable::build_scoped(&snapshot(&[("root", "/", "/app")]), RouteScope::All);
    assert_eq!(
        root.resolve("/discoverableclient/a/b", None)
            .unwrap()
            .upstream_path,
        "/app/a/b"
    );
}

#[test]
fn traversal_is_rejected() {
    let t = dc();
    for p in [
        "/discoverableclient/ws/v1/../admin",
        "/discoverableclient/ws/v1/%2e%2e/admin",
        "/discoverableclient/ws/v1/.%2E/admin",
        "/discoverableclient/ws/v1/x%2fy",
        "/discoverableclient/ws/v1/x%5c..",
        "/discoverableclient/ws/v1/x%zz",
        "/discoverableclient/ws/v1/x%2",
        "/discoverableclient/ws/v1/..",
        // Path parameters on a dot-dot segment (Tomcat strips `;...`).
        "/discoverableclient/ws/v1/..;/admin",
        "/discoverableclient/ws/v1/..;jsessionid=x/admin",
        "/discoverableclient/ws/v1/%2e%2e;x/admin",
        "/discoverableclient/ws/v1/.%2e%3bx/admin",
        // Double encoding, NUL and control characters, overlong UTF-8 for '.'.
        "/discoverableclient/ws/v1/%252e%252e/admin",
        "/discoverableclient/ws/v1/x%00.html",
        "/discoverableclient/ws/v1/x%0d%0aSet-Cookie:a",
        "/discoverableclient/ws/v1/%c0%ae%c0%ae/admin",
        "/discoverableclient/ws/v1/%2e%2e?./admin",
        "/discoverableclient/ws/v1/%2e%2e#/admin",
        "/discoverableclient/ws/v1/%ff",
        "/discoverableclient/ws/v1/x\\y",
    ] {
        assert!(
            matches!(t.resolve(p, None), Err(LookupError::BadPath(_))),
            "{p}"
        );
    }
    for ok in [
        "/discoverableclient/ws/v1/a..b/.x",
        "/discoverableclient/ws/v1/.../x",
        "/discoverableclient/ws/v1/%C3%A9t%C3%A9/a%20b",
        "/discoverableclient/ws/v1/a;b=c/d",
        "/discoverableclient/ws/v1/./x",
    ] {
        assert!(t.resolve(ok, None).is_ok(), "{ok}");
    }
}

#[test]
fn scheme_port_status_and_round_robin() {
    let t = table(vec![(
        "SVC",
        vec![
            inst(
                "1",
                "h1:9999",
                8001,
                false,
                Status::Up,
                &[("w", "ws", "/s")],
            ),
            inst("2", "h2", 8443, true, Status::Up, &[]),
            inst("3", "h3", 8003, false, Status::Down, &[]),
        ],
    )]);
    let r = t.resolve("/svc/ws/x", None).unwrap();
    let svc = &r.service;
    assert_eq!(svc.instances.len(), 3);
    assert_eq!(svc.up_count(), 2);
    assert_eq!(svc.instances[0].host, "h1");
    assert_eq!(svc.instances[0].scheme, Scheme::Ws);
    assert_eq!(
        (svc.instances[1].scheme, svc.instances[1].port),
        (Scheme::Wss, 8443)
    );
    let first: Vec<_> = svc.candidates(3).map(|e| e.instance_id.clone()).collect();
    let second: Vec<_> = svc.candidates(3).map(|e| e.instance_id.clone()).collect();
    assert_eq!(first, vec!["1", "2"]);
    assert_eq!(second, vec!["2", "1"]);
    assert_eq!(svc.candidates(1).count(), 1);
}

#[test]
fn failover_metadata_is_read_per_route() {
    let mut i = inst(
        "1",
        "h1",
        8001,
        false,
        Status::Up,
        &[
            ("a", "ws/a", "/a"),
            ("b", "ws/b", "/b"),
            ("c", "ws/c", "/c"),
        ],
    );
    i.metadata
        .insert("apiml.routes.a.failover".into(), " Reconnect ".into());
    i.metadata
        .insert("apiml.routes.b.failover".into(), "close".into());
    i.metadata
        .insert("apiml.routes.c.failover".into(), "sometimes".into());
    let t = table(vec![("SVC", vec![i])]);
    let mode = |p: &str| t.resolve(p, None).unwrap().route().unwrap().failover;
    assert_eq!(mode("/svc/ws/a"), Some(FailoverMode::Reconnect));
    assert_eq!(mode("/svc/ws/b"), Some(FailoverMode::Close));
    assert_eq!(mode("/svc/ws/c"), None);
}

#[test]
fn status_alone_decides_and_no_up_instance_keeps_the_service() {
    // A real server's DOWN instance with an UP override (`DownOrStartingRule`).
    let mut i = inst(
        "1",
        "h1",
        8001,
        false,
        Status::Down,
        &[("w", "ws/v1", "/s")],
    );
    i.overridden_status = Status::Up;
    let t = table(vec![("SVC", vec![i])]);
    let r = t.resolve("/svc/ws/v1", None).unwrap();
    assert_eq!(r.service.up_count(), 0);
    assert_eq!(r.service.candidates(3).count(), 0);
}

#[test]
fn routes_merge_across_instances_and_keys_need_four_parts() {
    let mut a = inst(
        "1",
        "h1",
        8001,
        false,
        Status::Up,
        &[("one", "ws/one", "/1")],
    );
    a.metadata
        .insert("apiml.routes.x.y.gatewayUrl".into(), "ws/bad".into());
    a.metadata
        .insert("apiml.routes.x.y.serviceUrl".into(), "/bad".into());
    a.metadata
        .insert("apiml.routes.half.gatewayUrl".into(), "ws/half".into());
    let b = inst(
        "2",
        "h2",
        8002,
        false,
        Status::Up,
        &[("two", "ws/two", "/2")],
    );
    let t = table(vec![("SVC", vec![a, b])]);
    assert!(t.resolve("/svc/ws/one", None).is_ok());
    assert!(t.resolve("/svc/ws/two", None).is_ok());
    assert_eq!(
        t.resolve("/svc/ws/bad", None).unwrap_err(),
        LookupError::NoRoute
    );
    assert_eq!(
        t.resolve("/svc/ws/half", None).unwrap_err(),
        LookupError::NoRoute
    );
}

#[test]
fn equal_snapshots_build_equal_tables() {
    assert_eq!(dc(), dc());
    assert_ne!(dc(), RouteTable::default());
}

#[test]
fn route_keys_have_exactly_four_parts() {
    assert_eq!(
        route_key("apiml.routes.ws_v1.gatewayUrl"),
        Some(("ws_v1", "gatewayUrl"))
    );
    assert_eq!(route_key("apiml.routes.a."), Some(("a", "")));
    assert_eq!(route_key("apiml.routes..gatewayUrl"), None);
    assert_eq!(route_key("apiml.routes.a.b.gatewayUrl"), None);
    assert_eq!(route_key("apiml.routes.a"), None);
    assert_eq!(route_key("apiml.routesx.a.b"), None);
    assert_eq!(route_key("x.apiml.routes.a.b"), None);
}

#[test]
fn normalisation() {
    assert_eq!(normalize_gateway_url("  /ws/v1/ "), "ws/v1");
    assert_eq!(normalize_service_url(""), "/");
    assert_eq!(normalize_service_url("a/b"), "/a/b");
}

/// A sticky preference comes first while UP, then the round robin without it; `only` gives
/// exactly the named instance (`X-InstanceId`).
#[test]
fn preferred_instance_first_and_only() {
    let t = table(vec![(
        "SVC",
        vec![
            inst("1", "h1", 8001, false, Status::Up, &[("w", "ws", "/s")]),
            inst("2", "h2", 8002, false, Status::Up, &[]),
            inst("3", "h3", 8003, false, Status::Up, &[]),
            inst("4", "h4", 8004, false, Status::Down, &[]),
        ],
    )]);
    let svc = t.resolve("/svc/ws/x", None).unwrap().service;
    let ids = |c: Candidates<'_>| c.map(|e| e.instance_id.clone()).collect::<Vec<_>>();
    for _ in 0..3 {
        let got = ids(svc.candidates_from(Some("2"), 9));
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "2");
        assert!(got[1..].contains(&"1".to_owned()) && got[1..].contains(&"3".to_owned()));
        assert_eq!(ids(svc.candidates_from(Some("2"), 1)), ["2"]);
    }
    // Not UP or unknown: the round robin alone.
    assert_eq!(ids(svc.candidates_from(Some("4"), 9)).len(), 3);
    assert!(!ids(svc.candidates_from(Some("4"), 9)).contains(&"4".to_owned()));
    assert_eq!(ids(svc.candidates_from(Some("nope"), 9)).len(), 3);
    assert_eq!(ids(svc.only("4")), ["4"]);
    assert_eq!(ids(svc.only("3")), ["3"]);
    assert!(ids(svc.only("x")).is_empty());
    assert_eq!(svc.instance("4").map(|e| e.status), Some(Status::Down));
}
