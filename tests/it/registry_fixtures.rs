//! Decoding real captured Eureka payloads (tests/fixtures/eureka, see SOURCES.md there) and
//! inline edge cases through `wsrelay::registry::decode` and the two format decoders.

use std::time::Instant;

use wsrelay::registry::{
    self, json, xml, ActionType, Application, DecodeError, Instance, PortInfo, Snapshot, Status,
};

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/eureka/",
            $path
        ))
        .as_slice()
    };
}

/// Every wire payload in the fixture directory, by path relative to it.
const PAYLOADS: &[(&str, &[u8])] = &[
    (
        "fargo/apps-sample-1-1.json",
        fixture!("fargo/apps-sample-1-1.json"),
    ),
    (
        "fargo/apps-sample-1-1-post-v122.json",
        fixture!("fargo/apps-sample-1-1-post-v122.json"),
    ),
    (
        "fargo/apps-sample-1-2.json",
        fixture!("fargo/apps-sample-1-2.json"),
    ),
    (
        "fargo/apps-sample-2-2.json",
        fixture!("fargo/apps-sample-2-2.json"),
    ),
    (
        "prometheus/apps-full.xml",
        fixture!("prometheus/apps-full.xml"),
    ),
    (
        "steeltoe/apps-foo-added.json",
        fixture!("steeltoe/apps-foo-added.json"),
    ),
    (
        "steeltoe/delta-foo-modified.json",
        fixture!("steeltoe/delta-foo-modified.json"),
    ),
    (
        "zowe-api-layer/wire-contract/applications-registry.json",
        fixture!("zowe-api-layer/wire-contract/applications-registry.json"),
    ),
    (
        "zowe-api-layer/wire-contract/applications-registry.xml",
        fixture!("zowe-api-layer/wire-contract/applications-registry.xml"),
    ),
    (
        "zowe-api-layer/wire-contract/applications-delta.json",
        fixture!("zowe-api-layer/wire-contract/applications-delta.json"),
    ),
    (
        "zowe-api-layer/wire-contract/applications-registry.mini.json",
        fixture!("zowe-api-layer/wire-contract/applications-registry.mini.json"),
    ),
    (
        "zowe-api-layer/wire-contract/instance-minimal.json",
        fixture!("zowe-api-layer/wire-contract/instance-minimal.json"),
    ),
    (
        "zowe-api-layer/catalog-standalone/service1.json",
        fixture!("zowe-api-layer/catalog-standalone/service1.json"),
    ),
];

/// Files in the fixture directory that are not Eureka wire payloads.
const NOT_PAYLOADS: &[&str] = &[
    "SOURCES.md",
    "zowe-api-layer/nodejs-enabler/service-configuration.yml",
    "zowe-api-layer/wire-contract/http-contract.json",
];

fn ok(bytes: &[u8]) -> Snapshot {
    match registry::decode(bytes) {
        Ok(s) => s,
        Err(e) => panic!("decode failed: {e}\n{}", String::from_utf8_lossy(bytes)),
    }
}

fn ok_str(s: &str) -> Snapshot {
    ok(s.as_bytes())
}

fn app<'a>(s: &'a Snapshot, name: &str) -> &'a Application {
    s.application(name)
        .unwrap_or_else(|| panic!("no application {name}"))
}

fn only_instance(s: &Snapshot) -> &Instance {
    assert_eq!(s.applications.len(), 1, "{s:?}");
    assert_eq!(s.applications[0].instances.len(), 1, "{s:?}");
    &s.applications[0].instances[0]
}

fn port(port: u16, enabled: bool) -> PortInfo {
    PortInfo { port, enabled }
}

fn meta<'a>(i: &'a Instance, key: &str) -> Option<&'a str> {
    i.metadata.get(key).map(|v| &**v)
}

fn json_err(bytes: &[u8]) -> (usize, usize, String) {
    match registry::decode(bytes) {
        Err(DecodeError::Json {
            line,
            column,
            message,
        }) => {
            assert!(line >= 1 && column >= 1, "{line}:{column} {message}");
            (line, column, message)
        }
        other => panic!(
            "expected a JSON error for {:?}, got {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn xml_err(bytes: &[u8]) -> (u64, String) {
    match registry::decode(bytes) {
        Err(DecodeError::Xml { offset, message }) => {
            assert!(offset <= bytes.len() as u64, "{offset} {message}");
            (offset, message)
        }
        other => panic!(
            "expected an XML error for {:?}, got {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture inventory
// ---------------------------------------------------------------------------------------------

#[test]
fn every_fixture_file_is_covered() {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy();
                out.push(rel.replace('\\', "/"));
            }
        }
    }
    let base = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/eureka"
    ));
    let mut files = Vec::new();
    walk(base, base, &mut files);
    for f in &files {
        assert!(
            PAYLOADS.iter().any(|(p, _)| p == f) || NOT_PAYLOADS.contains(&f.as_str()),
            "fixture {f} is not covered by registry_fixtures.rs"
        );
    }
    for (name, bytes) in PAYLOADS {
        assert!(registry::decode(bytes).is_ok(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// fargo: old XStream/Jettison JSON
// ---------------------------------------------------------------------------------------------

fn check_fargo_metricsd(s: &Snapshot) {
    let a = app(s, "TESTENG.METRICSD");
    assert_eq!(a.name, "TESTENG.METRICSD");
    assert_eq!(a.instances.len(), 1);
    let i = &a.instances[0];
    assert_eq!(i.host_name, "192.168.40.94:7101");
    assert_eq!(i.host(), "192.168.40.94");
    // No instanceId in pre-1.1 payloads: falls back to hostName.
    assert_eq!(i.instance_id, "192.168.40.94:7101");
    assert_eq!(i.app, "TESTENG.METRICSD");
    assert_eq!(i.ip_addr, "192.168.40.94");
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.overridden_status, Status::Up); // spelled `overriddenstatus`
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.port, port(7101, true));
    assert_eq!(i.secure_port, port(7101, true));
    assert_eq!(i.vip_address, "[]");
    assert_eq!(i.secure_vip_address, "");
    assert_eq!(i.home_page_url, None);
    assert_eq!(i.metadata.len(), 3);
    assert_eq!(meta(i, "base-uri"), Some("https://192.168.40.94:7101"));
    assert_eq!(
        meta(i, "swagger-api-docs"),
        Some("https://192.168.40.94:7101/api-docs")
    );
    assert_eq!(i.last_updated_timestamp_ms, 1402450388774);
    assert_eq!(i.last_dirty_timestamp_ms, 1402450388774);
    assert_eq!(i.action_type, Some(ActionType::Modified));
}

fn check_fargo_lsm(s: &Snapshot) {
    let a = app(s, "testeng.lsm");
    assert_eq!(a.instances.len(), 2);
    let [i1, i2] = &a.instances[..] else {
        unreachable!()
    };
    assert_eq!(i1.host_name, "qa16gs.qa.somecompany.com:7100");
    assert_eq!(i1.host(), "qa16gs.qa.somecompany.com");
    assert_eq!(i1.instance_id, "qa16gs.qa.somecompany.com:7100");
    assert_eq!(i2.host_name, "qa22gs:7100");
    assert_eq!(i2.host(), "qa22gs");
    for i in [i1, i2] {
        assert_eq!(i.status, Status::Up);
        assert_eq!(i.overridden_status, Status::Unknown);
        assert_eq!(i.status, Status::Up);
        assert_eq!(i.port, port(7100, true));
        assert_eq!(i.secure_port, port(7100, true));
        assert_eq!(i.action_type, Some(ActionType::Added));
    }
    assert_eq!(i1.vip_address, "[test.lax1.qa16]");
    assert_eq!(i2.ip_addr, "192.168.191.235");
    assert_eq!(i2.last_updated_timestamp_ms, 1402096233497);
    assert_eq!(i2.last_dirty_timestamp_ms, 1401527685391);
    assert_eq!(meta(i2, "base-uri"), Some("https://qa22gs:7100"));
}

#[test]
fn fargo_apps_sample_1_1_single_object_instance_and_string_port() {
    let s = ok(fixture!("fargo/apps-sample-1-1.json"));
    assert_eq!(s.versions_delta, Some(1)); // number on the wire
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_24_"));
    assert_eq!(s.applications.len(), 1);
    assert_eq!(s.instance_count(), 1);
    check_fargo_metricsd(&s);
}

#[test]
fn fargo_apps_sample_1_1_post_v122_numeric_port_string_version() {
    let s = ok(fixture!("fargo/apps-sample-1-1-post-v122.json"));
    assert_eq!(s.versions_delta, Some(1)); // string "1" on the wire
    assert_eq!(s.instance_count(), 1);
    check_fargo_metricsd(&s);
    // Same registry as the pre-1.2.2 capture, only the JSON types differ.
    assert_eq!(s, ok(fixture!("fargo/apps-sample-1-1.json")));
}

#[test]
fn fargo_apps_sample_1_2_instance_array() {
    let s = ok(fixture!("fargo/apps-sample-1-2.json"));
    assert_eq!(s.versions_delta, Some(1));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_24_"));
    assert_eq!(s.applications.len(), 1);
    assert_eq!(s.instance_count(), 2);
    check_fargo_lsm(&s);
}

#[test]
fn fargo_apps_sample_2_2_mixed_single_and_array() {
    let s = ok(fixture!("fargo/apps-sample-2-2.json"));
    assert_eq!(s.applications.len(), 2);
    assert_eq!(s.instance_count(), 3);
    assert_eq!(s.applications[0].name, "TESTENG.METRICSD");
    assert_eq!(s.applications[1].name, "TESTENG.LSM");
    check_fargo_metricsd(&s);
    check_fargo_lsm(&s);
    let one = ok(fixture!("fargo/apps-sample-1-1.json"));
    let two = ok(fixture!("fargo/apps-sample-1-2.json"));
    assert_eq!(s.applications[0], one.applications[0]);
    assert_eq!(s.applications[1], two.applications[0]);
}

// ---------------------------------------------------------------------------------------------
// prometheus: XStream XML
// ---------------------------------------------------------------------------------------------

#[test]
fn prometheus_apps_full_xstream_xml() {
    let s = ok(fixture!("prometheus/apps-full.xml"));
    assert_eq!(s.versions_delta, Some(1));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_4_"));
    assert_eq!(s.applications.len(), 2);
    assert_eq!(s.instance_count(), 4);

    let config = app(&s, "CONFIG-SERVICE");
    assert_eq!(config.instances.len(), 2);
    let c1 = &config.instances[0];
    assert_eq!(
        c1.instance_id,
        "config-service001.test.com:config-service:8080"
    );
    assert_eq!(c1.host_name, "config-service001.test.com");
    assert_eq!(c1.host(), "config-service001.test.com");
    assert_eq!(c1.app, "CONFIG-SERVICE");
    assert_eq!(c1.ip_addr, "192.133.83.31");
    assert_eq!(c1.status, Status::Up);
    assert_eq!(c1.overridden_status, Status::Unknown);
    assert_eq!(c1.status, Status::Up);
    assert_eq!(c1.port, port(8080, true));
    assert_eq!(c1.secure_port, port(8080, false));
    assert_eq!(c1.vip_address, "config-service");
    assert_eq!(c1.secure_vip_address, "");
    assert_eq!(
        c1.home_page_url.as_deref(),
        Some("http://config-service001.test.com:8080/")
    );
    // Kept verbatim, space included: URLs are not validated.
    assert_eq!(
        c1.health_check_url.as_deref(),
        Some("http://config-service001.test.com 8080/health")
    );
    assert_eq!(c1.metadata.len(), 1);
    assert_eq!(
        meta(c1, "instanceId"),
        Some("config-service001.test.com:config-service:8080")
    );
    assert_eq!(c1.last_updated_timestamp_ms, 1596003469304);
    assert_eq!(c1.action_type, Some(ActionType::Added));
    assert_eq!(
        config.instances[1].health_check_url.as_deref(),
        Some("http://config-service002.test.com:8080/health")
    );

    let meta_service = app(&s, "META-SERVICE");
    let m = &meta_service.instances[0];
    assert_eq!(m.instance_id, "meta-service002.test.com:meta-service:8080");
    assert_eq!(m.port, port(8080, true));
    assert_eq!(m.secure_port, port(443, false));
    assert_eq!(m.secure_vip_address, "meta-service");
    assert_eq!(meta(m, "project"), Some("meta-service"));
    assert_eq!(meta(m, "management.port"), Some("8090"));
    assert_eq!(m.last_dirty_timestamp_ms, 1535444352398);
    assert_eq!(meta_service.instances[1].ip_addr, "192.133.87.236");
}

// ---------------------------------------------------------------------------------------------
// steeltoe: legacy EurekaJacksonCodec JSON (strings for timestamps and flags)
// ---------------------------------------------------------------------------------------------

fn check_steeltoe_foo(s: &Snapshot, host: &str, action: ActionType) {
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_1_"));
    assert_eq!(s.applications[0].name, "FOO");
    let i = only_instance(s);
    assert_eq!(i.instance_id, "localhost:foo");
    assert_eq!(i.host_name, host);
    assert_eq!(i.app, "FOO");
    assert_eq!(i.ip_addr, "192.168.56.1");
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.overridden_status, Status::Unknown);
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.port, port(8080, true));
    assert_eq!(i.secure_port, port(443, false));
    assert!(
        i.metadata.is_empty(),
        "@class must be dropped: {:?}",
        i.metadata
    );
    assert_eq!(i.home_page_url.as_deref(), Some("http://localhost:8080/"));
    assert_eq!(
        i.status_page_url.as_deref(),
        Some("http://localhost:8080/info")
    );
    assert_eq!(
        i.health_check_url.as_deref(),
        Some("http://localhost:8080/health")
    );
    assert_eq!(i.vip_address, "foo");
    assert_eq!(i.last_updated_timestamp_ms, 1457714988223); // string on the wire
    assert_eq!(i.last_dirty_timestamp_ms, 1457714988172);
    assert_eq!(i.action_type, Some(action));
}

#[test]
fn steeltoe_apps_foo_added_legacy_layout() {
    let s = ok(fixture!("steeltoe/apps-foo-added.json"));
    assert_eq!(s.versions_delta, Some(1));
    check_steeltoe_foo(&s, "localhost", ActionType::Added);
}

#[test]
fn steeltoe_delta_foo_modified() {
    let s = ok(fixture!("steeltoe/delta-foo-modified.json"));
    assert_eq!(s.versions_delta, Some(3));
    check_steeltoe_foo(&s, "modified-host", ActionType::Modified);
}

// ---------------------------------------------------------------------------------------------
// zowe api-layer: Eureka 2.0.6 Jackson codecs
// ---------------------------------------------------------------------------------------------

fn check_zowe_registry(s: &Snapshot) {
    assert_eq!(s.versions_delta, Some(7));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_3_"));
    assert_eq!(s.applications.len(), 2);
    assert_eq!(s.instance_count(), 3);

    let dc = app(s, "DISCOVERABLECLIENT");
    assert_eq!(dc.instances.len(), 2);
    let [up, down] = &dc.instances[..] else {
        unreachable!()
    };
    assert_eq!(up.instance_id, "localhost:discoverableclient:10012");
    assert_eq!(up.host_name, "localhost");
    assert_eq!(up.status, Status::Up);
    assert_eq!(up.overridden_status, Status::Unknown);
    assert_eq!(up.status, Status::Up);
    assert_eq!(up.port, port(10012, false));
    assert_eq!(up.secure_port, port(10012, true));
    assert_eq!(up.vip_address, "discoverableclient");
    assert_eq!(up.secure_vip_address, "discoverableclient");
    assert_eq!(
        up.home_page_url.as_deref(),
        Some("https://localhost:10012/discoverableclient/")
    );
    assert_eq!(
        up.status_page_url.as_deref(),
        Some("https://localhost:10012/discoverableclient/application/info")
    );
    // Only secureHealthCheckUrl is sent, which the model does not keep.
    assert_eq!(up.health_check_url, None);
    assert_eq!(up.metadata.len(), 10);
    assert_eq!(meta(up, "apiml.routes.api-v1.gatewayUrl"), Some("/api/v1"));
    assert_eq!(
        meta(up, "apiml.routes.api-v1.serviceUrl"),
        Some("/discoverableclient/api/v1")
    );
    assert_eq!(meta(up, "apiml.corsEnabled"), Some("true"));
    assert_eq!(meta(up, "apiml.gateway.rateLimiterCapacity"), Some("100"));
    assert_eq!(up.last_updated_timestamp_ms, 1700000002000);
    assert_eq!(up.last_dirty_timestamp_ms, 1700000000500);
    assert_eq!(up.action_type, Some(ActionType::Added));

    assert_eq!(down.instance_id, "localhost:discoverableclient:10014");
    assert_eq!(down.status, Status::Down);
    assert_eq!(down.overridden_status, Status::OutOfService);

    let sc = app(s, "STATICCLIENT");
    let st = &sc.instances[0];
    assert_eq!(st.instance_id, "localhost:staticclient:10013");
    assert_eq!(st.port, port(10013, true));
    assert_eq!(st.secure_port, port(7002, false));
    assert_eq!(st.status_page_url, None);
    assert_eq!(
        meta(st, "apiml.routes.api-v1.serviceUrl"),
        Some("/staticclient/api/v1")
    );
    assert_eq!(meta(st, "apiml.authentication.scheme"), Some("bypass"));
}

#[test]
fn zowe_wire_contract_registry_json() {
    let s = ok(fixture!(
        "zowe-api-layer/wire-contract/applications-registry.json"
    ));
    check_zowe_registry(&s);
}

#[test]
fn zowe_wire_contract_registry_xml() {
    let s = ok(fixture!(
        "zowe-api-layer/wire-contract/applications-registry.xml"
    ));
    check_zowe_registry(&s);
}

#[test]
fn zowe_wire_contract_json_and_xml_are_the_same_registry() {
    let from_json = ok(fixture!(
        "zowe-api-layer/wire-contract/applications-registry.json"
    ));
    let from_xml = ok(fixture!(
        "zowe-api-layer/wire-contract/applications-registry.xml"
    ));
    assert_eq!(from_json, from_xml);
}

#[test]
fn zowe_wire_contract_delta() {
    let s = ok(fixture!(
        "zowe-api-layer/wire-contract/applications-delta.json"
    ));
    assert_eq!(s.versions_delta, Some(8));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_3_"));
    assert_eq!(s.applications.len(), 2);
    assert_eq!(s.instance_count(), 2);
    let added = &app(&s, "DISCOVERABLECLIENT").instances[0];
    assert_eq!(added.action_type, Some(ActionType::Added));
    assert_eq!(added.instance_id, "localhost:discoverableclient:10012");
    assert_eq!(
        meta(added, "apiml.routes.api-v1.gatewayUrl"),
        Some("/api/v1")
    );
    let deleted = &app(&s, "STATICCLIENT").instances[0];
    assert_eq!(deleted.action_type, Some(ActionType::Deleted));
    assert_eq!(deleted.instance_id, "localhost:staticclient:10013");
    assert_eq!(deleted.port, port(10013, true));
}

#[test]
fn zowe_wire_contract_registry_mini() {
    let s = ok(fixture!(
        "zowe-api-layer/wire-contract/applications-registry.mini.json"
    ));
    assert_eq!(s.versions_delta, Some(7));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_3_"));
    assert_eq!(s.applications.len(), 2);
    assert_eq!(s.instance_count(), 3);
    for a in &s.applications {
        for i in &a.instances {
            assert!(i.metadata.is_empty());
            assert_eq!(i.home_page_url, None);
            assert_eq!(i.status_page_url, None);
            assert_eq!(i.health_check_url, None);
            assert_eq!(i.overridden_status, Status::Unknown);
            assert_eq!(i.last_updated_timestamp_ms, 1700000002000);
            assert_eq!(i.last_dirty_timestamp_ms, 0); // absent
            assert_eq!(i.action_type, Some(ActionType::Added));
        }
    }
    let down = &app(&s, "DISCOVERABLECLIENT").instances[1];
    assert_eq!(down.instance_id, "localhost:discoverableclient:10014");
    assert_eq!(down.status, Status::Down);
    assert_eq!(down.status, Status::Down);
    assert_eq!(down.port, port(10012, false));
    assert_eq!(down.secure_port, port(10012, true));
    let st = &app(&s, "STATICCLIENT").instances[0];
    assert_eq!(st.secure_port, port(7002, false));
}

#[test]
fn zowe_wire_contract_instance_minimal() {
    let s = ok(fixture!(
        "zowe-api-layer/wire-contract/instance-minimal.json"
    ));
    assert_eq!(s.versions_delta, None);
    assert_eq!(s.apps_hashcode, None);
    assert_eq!(s.applications[0].name, "MINIMAL");
    let i = only_instance(&s);
    assert_eq!(i.instance_id, "localhost:minimal:10099");
    assert_eq!(i.app, "MINIMAL");
    assert_eq!(i.host_name, "localhost");
    assert_eq!(i.status, Status::OutOfService);
    assert_eq!(i.overridden_status, Status::OutOfService);
    assert_eq!(i.status, Status::OutOfService);
    assert_eq!(i.port, port(10099, true));
    assert_eq!(i.secure_port, port(7002, false));
    assert!(i.metadata.is_empty(), "{:?}", i.metadata);
    assert!(!i.metadata.contains_key("@class"));
    assert_eq!(i.action_type, None);
    assert_eq!(i.last_updated_timestamp_ms, 1700000002000);
}

#[test]
fn zowe_catalog_standalone_fragment_without_wrapper() {
    let s = ok(fixture!("zowe-api-layer/catalog-standalone/service1.json"));
    assert_eq!(s.versions_delta, None);
    assert_eq!(s.apps_hashcode, None);
    assert_eq!(s.applications.len(), 2);
    assert_eq!(s.instance_count(), 2);
    assert_eq!(s.applications[0].name, "SERVICE1-INSTANCE1");
    assert_eq!(s.applications[1].name, "SERVICE1-INSTANCE2");

    let i1 = &app(&s, "SERVICE1-INSTANCE1").instances[0];
    assert_eq!(i1.app, "service1-instance1");
    assert_eq!(i1.host_name, "zowe.org");
    assert_eq!(i1.instance_id, "zowe.org"); // no instanceId: hostName
    assert_eq!(i1.ip_addr, "1.1.1.1");
    assert_eq!(i1.status, Status::Up);
    assert_eq!(i1.overridden_status, Status::Unknown);
    assert_eq!(i1.status, Status::Up);
    assert_eq!(i1.port, port(1000, false));
    assert_eq!(i1.secure_port, port(1000, true));
    assert_eq!(
        i1.home_page_url.as_deref(),
        Some("https://www.zowe.org:1000")
    );
    assert_eq!(i1.last_updated_timestamp_ms, 0);
    assert_eq!(i1.action_type, None);
    assert_eq!(i1.metadata.len(), 18);
    assert_eq!(meta(i1, "apiml.routes.api.gatewayUrl"), Some("api"));
    assert_eq!(meta(i1, "apiml.routes.api.serviceUrl"), Some(""));
    assert_eq!(meta(i1, "apiml.routes.ui.gatewayUrl"), Some("ui"));
    assert_eq!(meta(i1, "apiml.routes.ui.serviceUrl"), Some(""));
    assert_eq!(meta(i1, "apiml.apiInfo.api.defaultApi"), Some("false"));

    let i2 = &app(&s, "SERVICE1-INSTANCE2").instances[0];
    assert_eq!(i2.port, port(2000, false));
    assert_eq!(i2.secure_port, port(2000, true));
    assert_eq!(i2.metadata.len(), 17);
    assert_eq!(meta(i2, "apiml.apiInfo.api.defaultApi"), Some("true"));
}

#[test]
fn zowe_http_contract_is_not_a_payload() {
    let (line, _, message) = json_err(fixture!("zowe-api-layer/wire-contract/http-contract.json"));
    assert!(message.contains("not a Eureka payload"), "{message}");
    assert!(
        line > 100,
        "reported at the end of the object, got line {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// XStream XML escaping (equivalent of the nodejs-enabler registration)
// ---------------------------------------------------------------------------------------------

/// The `instance:` block of zowe-api-layer/nodejs-enabler/service-configuration.yml as an
/// XStream server would list it, plus a `$` key. Unlike the YAML, `securePort` has no `enabled`
/// attribute here, to exercise the default (disabled).
const NODEJS_ENABLER_XSTREAM: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<applications>
  <versions__delta>12</versions__delta>
  <apps__hashcode>UP_1_</apps__hashcode>
  <application>
    <name>HWEXPRESS</name>
    <instance>
      <instanceId>localhost:hwexpress:10020</instanceId>
      <hostName>localhost</hostName>
      <app>HWEXPRESS</app>
      <ipAddr>127.0.0.1</ipAddr>
      <status>UP</status>
      <overriddenstatus>UNKNOWN</overriddenstatus>
      <port enabled="false">10020</port>
      <securePort>10020</securePort>
      <countryId>1</countryId>
      <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo">
        <name>MyOwn</name>
      </dataCenterInfo>
      <leaseInfo>
        <renewalIntervalInSecs>30</renewalIntervalInSecs>
        <durationInSecs>90</durationInSecs>
      </leaseInfo>
      <metadata class="java.util.Collections$SynchronizedMap">
        <apiml.catalog.tile.id>cademoapps</apiml.catalog.tile.id>
        <apiml.catalog.tile.title>Sample API Mediation Layer Applications</apiml.catalog.tile.title>
        <apiml.catalog.tile.version>1.0.0</apiml.catalog.tile.version>
        <apiml.routes.api__v1.gatewayUrl>api/v1</apiml.routes.api__v1.gatewayUrl>
        <apiml.routes.api__v1.serviceUrl>/api/v1</apiml.routes.api__v1.serviceUrl>
        <apiml.apiInfo.0.apiId>org.zowe.hwexpress</apiml.apiInfo.0.apiId>
        <apiml.apiInfo.0.gatewayUrl>api/v1</apiml.apiInfo.0.gatewayUrl>
        <apiml.apiInfo.0.swaggerUrl>https://localhost:10020/swagger.json</apiml.apiInfo.0.swaggerUrl>
        <apiml.service.title>Zowe Sample Node Service</apiml.service.title>
        <apiml.service.description>
          The Proxy Server is an HTTP HTTPS, and Websocket server built upon NodeJS and ExpressJS.
        </apiml.service.description>
        <hw.price_-unit>&#36;</hw.price_-unit>
      </metadata>
      <homePageUrl>https://localhost:10020/</homePageUrl>
      <statusPageUrl></statusPageUrl>
      <vipAddress>hwexpress</vipAddress>
      <secureVipAddress>hwexpress</secureVipAddress>
      <isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>
      <lastUpdatedTimestamp>1700000002000</lastUpdatedTimestamp>
      <lastDirtyTimestamp>1700000000500</lastDirtyTimestamp>
      <actionType>ADDED</actionType>
    </instance>
  </application>
</applications>
"#;

#[test]
fn xstream_xml_nodejs_enabler_unescapes_metadata_keys() {
    let s = ok_str(NODEJS_ENABLER_XSTREAM);
    assert_eq!(s.versions_delta, Some(12));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_1_"));
    assert_eq!(s.applications[0].name, "HWEXPRESS");
    let i = only_instance(&s);
    assert_eq!(i.instance_id, "localhost:hwexpress:10020");
    assert_eq!(i.port, port(10020, false));
    assert_eq!(i.secure_port, port(10020, false)); // no `enabled` attribute
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.overridden_status, Status::Unknown);
    assert_eq!(
        meta(i, "apiml.routes.api_v1.gatewayUrl"),
        Some("api/v1"),
        "{:?}",
        i.metadata
    );
    assert_eq!(meta(i, "apiml.routes.api_v1.serviceUrl"), Some("/api/v1"));
    assert!(!i.metadata.keys().any(|k| k.contains("__")));
    assert_eq!(meta(i, "hw.price$unit"), Some("$"));
    assert_eq!(
        meta(i, "apiml.service.description"),
        Some("The Proxy Server is an HTTP HTTPS, and Websocket server built upon NodeJS and ExpressJS.")
    );
    assert_eq!(i.metadata.len(), 11);
    assert_eq!(i.status_page_url.as_deref(), Some(""));
    assert_eq!(i.secure_vip_address, "hwexpress");
    assert_eq!(i.action_type, Some(ActionType::Added));
}

// ---------------------------------------------------------------------------------------------
// Inline shapes and flexible fields
// ---------------------------------------------------------------------------------------------

#[test]
fn json_single_object_application_and_instance() {
    let fragment = ok_str(
        r#"{"application":{"name":"A","instance":{"instanceId":"i1","hostName":"h","app":"A",
            "port":{"$":80,"@enabled":"true"}}}}"#,
    );
    assert_eq!(fragment.applications.len(), 1);
    assert_eq!(fragment.applications[0].name, "A");
    assert_eq!(only_instance(&fragment).instance_id, "i1");
    assert_eq!(fragment.versions_delta, None);

    let wrapped = ok_str(
        r#"{"applications":{"application":{"name":"A","instance":{"instanceId":"i1",
            "hostName":"h","app":"A","port":{"$":80,"@enabled":"true"}}}}}"#,
    );
    assert_eq!(wrapped, fragment);

    let single = ok_str(
        r#"{"instance":{"instanceId":"i1","hostName":"h","app":"A","port":{"$":80,"@enabled":"true"}}}"#,
    );
    assert_eq!(single, fragment);

    let empty =
        ok_str(r#"{"applications":{"versions__delta":"1","apps__hashcode":"","application":[]}}"#);
    assert_eq!(empty.applications.len(), 0);
    assert_eq!(empty.apps_hashcode.as_deref(), Some(""));
    let null_list = ok_str(r#"{"applications":{"application":null}}"#);
    assert!(null_list.applications.is_empty());
}

#[test]
fn xml_single_application_and_instance_roots() {
    let app_root = ok_str(
        "<application><name>A</name><instance><instanceId>i1</instanceId><hostName>h</hostName>\
         <app>A</app><port enabled=\"true\">80</port></instance></application>",
    );
    let inst_root = ok_str(
        "<instance><instanceId>i1</instanceId><hostName>h</hostName><app>A</app>\
         <port enabled=\"true\">80</port></instance>",
    );
    let json = ok_str(
        r#"{"instance":{"instanceId":"i1","hostName":"h","app":"A","port":{"$":80,"@enabled":"true"}}}"#,
    );
    assert_eq!(app_root, json);
    assert_eq!(inst_root, json);
    assert_eq!(ok_str("<applications/>"), Snapshot::default());
}

/// Every flexible field once as strings (legacy layout) and once as numbers/booleans (Jackson
/// bean layout): both decode to the same snapshot.
#[test]
fn json_numbers_and_strings_are_interchangeable() {
    let strings = r#"{"applications":{"versions__delta":"42","apps__hashcode":"UP_1_",
        "application":[{"name":"A","instance":[{"instanceId":"i","hostName":"h","app":"A",
        "status":"UP","overriddenstatus":"DOWN",
        "port":{"$":"8080","@enabled":"true"},"securePort":{"$":"8443","@enabled":"false"},
        "metadata":{"n":"7","b":"true","s":"x"},
        "lastUpdatedTimestamp":"1457714988223","lastDirtyTimestamp":"-5",
        "isCoordinatingDiscoveryServer":"false","countryId":"1"}]}]}}"#;
    let numbers = r#"{"applications":{"versions__delta":42,"apps__hashcode":"UP_1_",
        "application":[{"name":"A","instance":[{"instanceId":"i","hostName":"h","app":"A",
        "status":"UP","overriddenStatus":"DOWN",
        "port":{"$":8080,"@enabled":true},"securePort":{"$":8443,"@enabled":false},
        "metadata":{"n":7,"b":true,"s":"x"},
        "lastUpdatedTimestamp":1457714988223,"lastDirtyTimestamp":-5,
        "isCoordinatingDiscoveryServer":false,"countryId":1}]}]}}"#;
    let a = ok_str(strings);
    let b = ok_str(numbers);
    assert_eq!(a, b);
    assert_eq!(a.versions_delta, Some(42));
    let i = only_instance(&a);
    assert_eq!(i.port, port(8080, true));
    assert_eq!(i.secure_port, port(8443, false));
    assert_eq!(i.overridden_status, Status::Down);
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.last_updated_timestamp_ms, 1457714988223);
    assert_eq!(i.last_dirty_timestamp_ms, -5);
    assert_eq!(meta(i, "n"), Some("7"));
    assert_eq!(meta(i, "b"), Some("true"));

    // A numeric hash code is kept as its text.
    let s = ok_str(r#"{"applications":{"apps__hashcode":17,"versions__delta":null}}"#);
    assert_eq!(s.apps_hashcode.as_deref(), Some("17"));
    assert_eq!(s.versions_delta, None);
}

#[test]
fn json_enabled_flag_bool_string_and_default() {
    let s = ok_str(
        r#"{"application":[{"name":"A","instance":[
            {"hostName":"a","port":{"$":1,"@enabled":true},"securePort":{"$":2,"@enabled":true}},
            {"hostName":"b","port":{"$":1,"@enabled":"false"},"securePort":{"$":2,"@enabled":"TRUE"}},
            {"hostName":"c","port":{"$":1},"securePort":{"$":2}},
            {"hostName":"d","port":8080},
            {"hostName":"e"}
        ]}]}"#,
    );
    let i = &s.applications[0].instances;
    assert_eq!(
        (i[0].port, i[0].secure_port),
        (port(1, true), port(2, true))
    );
    assert_eq!(
        (i[1].port, i[1].secure_port),
        (port(1, false), port(2, true))
    );
    // Flag absent: port enabled, securePort disabled (Eureka's defaults).
    assert_eq!(
        (i[2].port, i[2].secure_port),
        (port(1, true), port(2, false))
    );
    assert_eq!(i[3].port, port(8080, true));
    // Element absent: not advertised.
    assert_eq!(
        (i[4].port, i[4].secure_port),
        (port(0, false), port(0, false))
    );
}

#[test]
fn xml_enabled_attribute_and_default() {
    let s = ok_str(
        "<application><name>A</name>\
         <instance><hostName>a</hostName><port enabled='TRUE'>1</port><securePort enabled='true'>2</securePort></instance>\
         <instance><hostName>b</hostName><port enabled='false'> 1 </port><securePort enabled='yes'>2</securePort></instance>\
         <instance><hostName>c</hostName><port>1</port><securePort>2</securePort></instance>\
         <instance><hostName>d</hostName><port enabled='true'/></instance>\
         </application>",
    );
    let i = &s.applications[0].instances;
    assert_eq!(
        (i[0].port, i[0].secure_port),
        (port(1, true), port(2, true))
    );
    assert_eq!(
        (i[1].port, i[1].secure_port),
        (port(1, false), port(2, false))
    );
    assert_eq!(
        (i[2].port, i[2].secure_port),
        (port(1, true), port(2, false))
    );
    assert_eq!(
        (i[3].port, i[3].secure_port),
        (port(0, true), port(0, false))
    );
}

#[test]
fn json_metadata_non_string_values_and_class_marker() {
    let s = ok_str(
        r#"{"instance":{"hostName":"h","metadata":{"@class":"java.util.LinkedHashMap",
            "int":8090,"neg":-1,"float":1.5,"yes":true,"no":false,"nil":null,
            "obj":{"a":"b"},"arr":["x"],"s":"text"}}}"#,
    );
    let i = only_instance(&s);
    assert_eq!(meta(i, "int"), Some("8090"));
    assert_eq!(meta(i, "neg"), Some("-1"));
    assert_eq!(meta(i, "float"), Some("1.5"));
    assert_eq!(meta(i, "yes"), Some("true"));
    assert_eq!(meta(i, "no"), Some("false"));
    assert_eq!(meta(i, "s"), Some("text"));
    assert!(!i.metadata.contains_key("@class"));
    assert!(!i.metadata.contains_key("nil"));
    assert!(!i.metadata.contains_key("obj"));
    assert!(!i.metadata.contains_key("arr"));
    assert_eq!(i.metadata.len(), 6);

    let no_meta = ok_str(r#"{"instance":{"hostName":"h","metadata":null}}"#);
    assert!(only_instance(&no_meta).metadata.is_empty());
}

#[test]
fn json_unknown_fields_are_ignored() {
    let plain = ok_str(r#"{"instance":{"hostName":"h","app":"A","status":"UP"}}"#);
    let noisy = ok_str(
        r#"{"generatedBy":"test","instance":{"future":{"deeply":[{"nested":[1,2,{"x":null}]}]},
            "hostName":"h","leaseInfo":{"renewalIntervalInSecs":30},"app":"A","sid":"na",
            "dataCenterInfo":{"@class":"x","name":"MyOwn","metadata":{"a":1}},"status":"UP",
            "appGroupName":null,"countryId":1,"secureHealthCheckUrl":"https://h/health"},
            "extra":[1,2,3]}"#,
    );
    assert_eq!(plain, noisy);
    let i = only_instance(&noisy);
    assert_eq!(i.instance_id, "h");
    assert_eq!(i.status, Status::Up);
}

#[test]
fn json_overridden_status_spellings() {
    let camel = ok_str(r#"{"instance":{"hostName":"h","overriddenStatus":"OUT_OF_SERVICE"}}"#);
    let lower = ok_str(r#"{"instance":{"hostName":"h","overriddenstatus":"OUT_OF_SERVICE"}}"#);
    let both = ok_str(
        r#"{"instance":{"hostName":"h","overriddenstatus":"UP","overriddenStatus":"OUT_OF_SERVICE"}}"#,
    );
    for s in [&camel, &lower, &both] {
        assert_eq!(only_instance(s).overridden_status, Status::OutOfService);
    }
}

#[test]
fn unknown_status_and_action_type() {
    let j = ok_str(
        r#"{"instance":{"hostName":"h","status":"WEIRD","overriddenStatus":"weird",
            "actionType":"REPLACED"}}"#,
    );
    let x = ok_str(
        "<instance><hostName>h</hostName><status>WEIRD</status>\
         <overriddenStatus>weird</overriddenStatus><actionType>REPLACED</actionType></instance>",
    );
    for s in [&j, &x] {
        let i = only_instance(s);
        assert_eq!(i.status, Status::Unknown);
        assert_eq!(i.overridden_status, Status::Unknown);
        assert_eq!(i.status, Status::Unknown);
        assert_eq!(i.action_type, None);
    }
    let lower = ok_str(r#"{"instance":{"hostName":"h","status":" up ","actionType":"deleted"}}"#);
    assert_eq!(only_instance(&lower).status, Status::Up);
    assert_eq!(only_instance(&lower).action_type, Some(ActionType::Deleted));
}

#[test]
fn xml_entity_and_character_references() {
    let s = ok_str(
        "<instance><app>A&amp;B</app><hostName> h&#46;example&#x2E;com </hostName>\
         <homePageUrl>http://h/?a=1&amp;b=2</homePageUrl>\
         <metadata><price>&#36;5</price><q>&lt;&quot;x&quot; &amp; &apos;y&apos;&gt;</q>\
         <cdata><![CDATA[a<b>&amp;]]></cdata><ws>  padded  </ws><e/></metadata></instance>",
    );
    let i = only_instance(&s);
    assert_eq!(i.app, "A&B");
    assert_eq!(s.applications[0].name, "A&B");
    assert_eq!(i.host_name, "h.example.com");
    assert_eq!(i.home_page_url.as_deref(), Some("http://h/?a=1&b=2"));
    assert_eq!(meta(i, "price"), Some("$5"));
    assert_eq!(meta(i, "q"), Some("<\"x\" & 'y'>"));
    assert_eq!(meta(i, "cdata"), Some("a<b>&amp;"));
    assert_eq!(meta(i, "ws"), Some("padded"));
    assert_eq!(meta(i, "e"), Some(""));

    let (_, message) = xml_err(b"<instance><app>a&nbsp;b</app></instance>");
    assert!(message.contains("nbsp"), "{message}");
    xml_err(b"<instance><app>&#0;</app></instance>");
    xml_err(b"<instance><app>&#xD800;</app></instance>");
    xml_err(b"<instance><app>a & b</app></instance>");
}

#[test]
fn xml_jackson_layout_header_last_and_text_around_elements() {
    let s = ok_str(
        "<!-- leading comment -->\n<applications>\n  stray text\n  <application>\
         <name> A </name><instance><hostName>h</hostName></instance></application>\
         <versions__delta> 9 </versions__delta><apps__hashcode>UP_1_</apps__hashcode>\
         </applications>\n<!-- trailing -->\n",
    );
    assert_eq!(s.versions_delta, Some(9));
    assert_eq!(s.apps_hashcode.as_deref(), Some("UP_1_"));
    assert_eq!(s.applications[0].name, "A");
}

#[test]
fn bom_is_skipped() {
    let mut xml = b"\xEF\xBB\xBF".to_vec();
    xml.extend_from_slice(b"<instance><hostName>h</hostName></instance>");
    assert_eq!(ok(&xml).instance_count(), 1);
    let mut js = b"\xEF\xBB\xBF".to_vec();
    js.extend_from_slice(br#"{"instance":{"hostName":"h"}}"#);
    assert_eq!(ok(&js).instance_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn garbage_and_empty_input() {
    assert!(matches!(
        registry::decode(b"hello"),
        Err(DecodeError::UnknownFormat(_))
    ));
    assert!(matches!(
        registry::decode(b""),
        Err(DecodeError::UnknownFormat(_))
    ));
    assert!(matches!(
        registry::decode(b" \n\t "),
        Err(DecodeError::UnknownFormat(_))
    ));
    // The format decoders on their own.
    assert!(matches!(json::decode(b""), Err(DecodeError::Json { .. })));
    assert!(matches!(xml::decode(b""), Err(DecodeError::Xml { .. })));
    assert!(matches!(xml::decode(b"  "), Err(DecodeError::Xml { .. })));

    let (line, column, _) = json_err(b"{garbage}");
    assert_eq!((line, column), (1, 2));
    json_err(b"{\"applications\":{}} trailing");
    json_err(b"{}");
    xml_err(b"<garbage");
    xml_err(b"<<<>>>");
    xml_err(b"<applications></application>");
    xml_err(b"<applications/><applications/>");
    xml_err(b"<applications/>trailing");
    let (_, message) = xml_err(b"<services><application/></services>");
    assert!(message.contains("services"), "{message}");
    // Invalid UTF-8 in a value.
    xml_err(b"<instance><app>\xFF\xFE</app></instance>");
    json_err(b"{\"instance\":{\"app\":\"\xFF\"}}");
}

#[test]
fn top_level_array_and_wrong_shapes() {
    assert!(matches!(
        registry::decode(b"[{\"applications\":{}}]"),
        Err(DecodeError::UnknownFormat(_))
    ));
    match json::decode(b"[{\"applications\":{}}]") {
        Err(DecodeError::Json { line, column, .. }) => assert_eq!((line, column), (1, 1)),
        other => panic!("{other:?}"),
    }
    let (line, _, message) = json_err(b"{\n  \"applications\": [1]\n}");
    assert_eq!(line, 2);
    assert!(message.contains("invalid type"), "{message}");
    json_err(br#"{"applications":"x"}"#);
    json_err(br#"{"application":[[1]]}"#);
    json_err(br#"{"application":"A"}"#);
    json_err(br#"{"instance":[{"hostName":"h"}]}"#);
    json_err(br#"{"instance":{"hostName":{"a":1}}}"#);
    json_err(br#"{"instance":{"metadata":[1]}}"#);
    json_err(br#"{"instance":{"metadata":"x"}}"#);
    json_err(br#"{"instance":{"lastUpdatedTimestamp":"soon"}}"#);
    json_err(br#"{"instance":{"lastUpdatedTimestamp":1.5}}"#);
    json_err(br#"{"applications":{"versions__delta":"v1"}}"#);
    json_err(br#"{"instance":{"port":{"@enabled":1}}}"#);
    xml_err(b"<instance><hostName><b>h</b></hostName></instance>");
    xml_err(b"<instance><lastDirtyTimestamp>soon</lastDirtyTimestamp></instance>");
    xml_err(b"<applications><versions__delta>v1</versions__delta></applications>");
}

#[test]
fn bad_ports_are_errors() {
    let (line, _, message) = json_err(
        b"{\"instance\":{\n\"hostName\":\"h\",\n\"port\":{\"$\":\"abc\",\"@enabled\":\"true\"}}}",
    );
    assert_eq!(line, 3);
    assert!(message.contains("abc"), "{message}");
    let (_, _, message) = json_err(br#"{"instance":{"port":{"$":70000}}}"#);
    assert!(message.contains("70000"), "{message}");
    json_err(br#"{"instance":{"securePort":{"$":"70000"}}}"#);
    json_err(br#"{"instance":{"port":{"$":-1}}}"#);
    json_err(br#"{"instance":{"port":{"$":80.0}}}"#);
    json_err(br#"{"instance":{"port":"http"}}"#);

    let xml = b"<instance><hostName>h</hostName><port enabled=\"true\">abc</port></instance>";
    let (offset, message) = xml_err(xml);
    assert!(message.contains("abc"), "{message}");
    assert!(
        offset > 30,
        "offset {offset} should point at the port element"
    );
    let (_, message) = xml_err(b"<instance><securePort>70000</securePort></instance>");
    assert!(message.contains("70000"), "{message}");
    xml_err(b"<instance><port>-1</port></instance>");
    xml_err(b"<instance><port enabled=\"true>1</port></instance>");
}

#[test]
fn truncated_payloads_are_errors() {
    let js = fixture!("zowe-api-layer/wire-contract/applications-registry.json");
    let (line, column, message) = json_err(&js[..js.len() / 2]);
    assert_eq!(line, 1);
    assert!(column > 1000, "{column}");
    assert!(message.contains("EOF"), "{message}");

    let x = fixture!("prometheus/apps-full.xml");
    let half = x.len() / 2;
    let (offset, _) = xml_err(&x[..half]);
    assert!(offset as usize <= half);

    // Every prefix of every payload fails (except when only trailing blanks are cut), and
    // none panics.
    for (name, bytes) in PAYLOADS {
        let content_len = bytes.trim_ascii_end().len();
        let step = (content_len / 300).max(1);
        let mut cut = 0;
        while cut < content_len {
            assert!(
                registry::decode(&bytes[..cut]).is_err(),
                "{name} cut at {cut} decoded"
            );
            cut += if content_len - cut < 64 { 1 } else { step };
        }
    }
}

#[test]
fn corrupted_payloads_never_panic() {
    for (_, bytes) in PAYLOADS {
        let step = (bytes.len() / 200).max(1);
        for pos in (0..bytes.len()).step_by(step) {
            for b in [b'"', b'<', b'>', b'}', b']', b'&', b'0', b'_', 0xFF, 0] {
                let mut v = bytes.to_vec();
                v[pos] = b;
                let _ = registry::decode(&v);
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error() {
    let deep_json = format!(
        "{{\"applications\":{{\"extra\":{}1{}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let (_, _, message) = json_err(deep_json.as_bytes());
    assert!(message.contains("recursion"), "{message}");
    let deep_meta = format!(
        "{{\"instance\":{{\"metadata\":{{\"k\":{}1{}}}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    json_err(deep_meta.as_bytes());
    let deep_objects = format!("{}1{}", "{\"instance\":".repeat(200), "}".repeat(200));
    json_err(deep_objects.as_bytes());

    let deep_xml = format!(
        "<applications>{}{}</applications>",
        "<x>".repeat(200),
        "</x>".repeat(200)
    );
    let (_, message) = xml_err(deep_xml.as_bytes());
    assert!(message.contains("deeper"), "{message}");
    let deep_meta_xml = format!(
        "<instance><metadata>{}{}</metadata></instance>",
        "<x>".repeat(200),
        "</x>".repeat(200)
    );
    xml_err(deep_meta_xml.as_bytes());
    // Unclosed deep nesting: also an error, no stack growth.
    xml_err("<applications>".repeat(100_000).as_bytes());
    json_err("{\"applications\":".repeat(100_000).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Size / speed
// ---------------------------------------------------------------------------------------------

fn big_json(n: usize) -> String {
    let mut s = String::from(r#"{"applications":{"versions__delta":"1","apps__hashcode":"UP_"#);
    s.push_str(&n.to_string());
    s.push_str(r#"_","application":["#);
    for a in 0..n / 10 {
        if a > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#"{{"name":"APP{a}","instance":["#));
        for k in 0..10 {
            if k > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                r#"{{"instanceId":"host{a}-{k}:app{a}:10012","app":"APP{a}","ipAddr":"10.0.{a}.{k}","sid":"na","homePageUrl":"https://host{a}-{k}:10012/","statusPageUrl":"https://host{a}-{k}:10012/info","vipAddress":"app{a}","secureVipAddress":"app{a}","countryId":1,"dataCenterInfo":{{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"}},"hostName":"host{a}-{k}","status":"UP","overriddenStatus":"UNKNOWN","leaseInfo":{{"renewalIntervalInSecs":30,"durationInSecs":90,"registrationTimestamp":1700000000000,"lastRenewalTimestamp":1700000030000,"evictionTimestamp":0,"serviceUpTimestamp":1700000001000}},"isCoordinatingDiscoveryServer":false,"lastUpdatedTimestamp":1700000002000,"lastDirtyTimestamp":1700000000500,"actionType":"ADDED","port":{{"$":10012,"@enabled":"false"}},"securePort":{{"$":10012,"@enabled":"true"}},"metadata":{{"apiml.apiInfo.0.apiId":"zowe.apiml.app{a}","apiml.apiInfo.0.gatewayUrl":"api/v1","apiml.authentication.scheme":"bypass","apiml.routes.api-v1.gatewayUrl":"/api/v1","apiml.routes.api-v1.serviceUrl":"/app{a}/api/v1","apiml.service.title":"Service {a}"}}}}"#
            ));
        }
        s.push_str("]}");
    }
    s.push_str("]}}");
    s
}

fn big_xml(n: usize) -> String {
    let mut s = format!(
        "<applications><versions__delta>1</versions__delta><apps__hashcode>UP_{n}_</apps__hashcode>"
    );
    for a in 0..n / 10 {
        s.push_str(&format!("<application><name>APP{a}</name>"));
        for k in 0..10 {
            s.push_str(&format!(
                r#"<instance><instanceId>host{a}-{k}:app{a}:10012</instanceId><app>APP{a}</app><ipAddr>10.0.{a}.{k}</ipAddr><sid>na</sid><homePageUrl>https://host{a}-{k}:10012/</homePageUrl><statusPageUrl>https://host{a}-{k}:10012/info</statusPageUrl><vipAddress>app{a}</vipAddress><secureVipAddress>app{a}</secureVipAddress><countryId>1</countryId><dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo><hostName>host{a}-{k}</hostName><status>UP</status><overriddenStatus>UNKNOWN</overriddenStatus><leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs><registrationTimestamp>1700000000000</registrationTimestamp><lastRenewalTimestamp>1700000030000</lastRenewalTimestamp><evictionTimestamp>0</evictionTimestamp><serviceUpTimestamp>1700000001000</serviceUpTimestamp></leaseInfo><isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer><metadata><apiml.apiInfo.0.apiId>zowe.apiml.app{a}</apiml.apiInfo.0.apiId><apiml.apiInfo.0.gatewayUrl>api/v1</apiml.apiInfo.0.gatewayUrl><apiml.authentication.scheme>bypass</apiml.authentication.scheme><apiml.routes.api-v1.gatewayUrl>/api/v1</apiml.routes.api-v1.gatewayUrl><apiml.routes.api-v1.serviceUrl>/app{a}/api/v1</apiml.routes.api-v1.serviceUrl><apiml.service.title>Service {a}</apiml.service.title></metadata><lastUpdatedTimestamp>1700000002000</lastUpdatedTimestamp><lastDirtyTimestamp>1700000000500</lastDirtyTimestamp><actionType>ADDED</actionType><port enabled="false">10012</port><securePort enabled="true">10012</securePort></instance>"#
            ));
        }
        s.push_str("</application>");
    }
    s.push_str("</applications>");
    s
}

/// A 10,000-instance registry in both formats decodes to the same snapshot. Timing is printed
/// (`cargo test --release --test registry_fixtures -- --nocapture large`) and, in release
/// builds only, bounded generously so that a gross regression fails.
#[test]
fn large_registry_10k_instances() {
    const N: usize = 10_000;
    let js = big_json(N);
    let xm = big_xml(N);

    let t = Instant::now();
    let a = ok(js.as_bytes());
    let json_time = t.elapsed();
    let t = Instant::now();
    let b = ok(xm.as_bytes());
    let xml_time = t.elapsed();
    println!(
        "10k instances: JSON {} KiB in {json_time:?}, XML {} KiB in {xml_time:?}",
        js.len() / 1024,
        xm.len() / 1024
    );

    assert_eq!(a.instance_count(), N);
    assert_eq!(a.applications.len(), N / 10);
    assert_eq!(a.apps_hashcode.as_deref(), Some("UP_10000_"));
    let last = &app(&a, "APP999").instances[9];
    assert_eq!(last.instance_id, "host999-9:app999:10012");
    assert_eq!(
        meta(last, "apiml.routes.api-v1.serviceUrl"),
        Some("/app999/api/v1")
    );
    assert_eq!(a, b);

    if !cfg!(debug_assertions) {
        assert!(json_time.as_millis() < 250, "JSON took {json_time:?}");
        assert!(xml_time.as_millis() < 250, "XML took {xml_time:?}");
    }
}
