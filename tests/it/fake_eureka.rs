//! Checks that the fake Eureka server in `tests/support/eureka.rs` follows the real server's
//! wire rules, over real loopback sockets.

use std::io::Read as _;
use std::time::Duration;

use crate::support::eureka::{FakeEureka, Mode, TestInstance};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/eureka");

/// A client that never decompresses, so tests see the raw bytes.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

struct Reply {
    status: u16,
    content_type: Option<String>,
    content_encoding: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    };
    let content_type = header("content-type");
    let content_encoding = header("content-encoding");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body").to_vec();
    Reply {
        status,
        content_type,
        content_encoding,
        body,
    }
}

async fn get(fake: &FakeEureka, path: &str, accept: Option<&str>) -> Reply {
    let mut req = client().get(fake.url(path));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    send(req).await
}

async fn get_json(fake: &FakeEureka, path: &str) -> Value {
    let r = get(fake, path, Some("application/json")).await;
    assert_eq!(r.status, 200, "GET {path}");
    r.json()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("valid gzip");
    out
}

/// Top-level keys, in order, of the first `"instance"` object in a JSON text.
fn first_instance_keys(json: &str) -> Vec<String> {
    let start = json.find("\"instance\"").expect("instance key");
    let open = start + json[start..].find('{').expect("instance object");
    let mut keys = Vec::new();
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    let mut current = String::new();
    let chars: Vec<char> = json[open..].chars().collect();
    for (idx, &c) in chars.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
                let next = chars[idx + 1..].iter().find(|c| !c.is_whitespace());
                if depth == 1 && next == Some(&':') {
                    keys.push(current.clone());
                }
            } else {
                current.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                current.clear();
            }
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    keys
}

/// Names, in order, of the child elements of the first `<parent>` in an XML text.
fn first_children(xml: &str, parent: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut names = Vec::new();
    let mut depth_in_parent: Option<usize> = None;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => match depth_in_parent {
                Some(0) => {
                    names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                    depth_in_parent = Some(1);
                }
                Some(d) => depth_in_parent = Some(d + 1),
                None if e.name().as_ref() == parent.as_bytes() => depth_in_parent = Some(0),
                None => {}
            },
            Event::Empty(e) if depth_in_parent == Some(0) => {
                names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Event::End(_) => match depth_in_parent {
                Some(0) => return names,
                Some(d) => depth_in_parent = Some(d - 1),
                None => {}
            },
            Event::Eof => return names,
            _ => {}
        }
    }
}

fn xml_hash(xml: &str) -> String {
    let start = xml.find("<apps__hashcode>").expect("hash element") + "<apps__hashcode>".len();
    let end = xml[start..].find("</apps__hashcode>").expect("hash end");
    xml[start..start + end].to_string()
}

#[tokio::test]
async fn xml_by_default_json_only_when_asked() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("gateway", "gw.local", 8080));
    for path in [
        "apps/",
        "apps",
        "apps/delta",
        "apps/GATEWAY",
        "vips/gateway",
    ] {
        for accept in [None, Some("*/*"), Some("application/xml")] {
            let r = get(&fake, path, accept).await;
            assert_eq!(r.status, 200, "{path} {accept:?}");
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/xml"),
                "{path} {accept:?}"
            );
            assert!(r.text().starts_with('<'), "{path}: {}", r.text());
        }
        let r = get(&fake, path, Some("application/json")).await;
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/json"),
            "{path}"
        );
        r.json();
    }

    let v = get_json(&fake, "apps/").await;
    let apps = &v["applications"];
    assert_eq!(apps["versions__delta"], "1");
    assert_eq!(apps["apps__hashcode"], "UP_1_");
    assert_eq!(apps["application"][0]["name"], "GATEWAY");
    let inst = &apps["application"][0]["instance"][0];
    assert_eq!(inst["instanceId"], "gw.local:gateway:8080");
    assert_eq!(inst["app"], "GATEWAY");
    assert_eq!(
        inst["port"],
        serde_json::json!({"$": 8080, "@enabled": "true"})
    );
    assert_eq!(
        inst["securePort"],
        serde_json::json!({"$": 443, "@enabled": "false"})
    );
    assert_eq!(inst["countryId"], 1);
    assert_eq!(inst["isCoordinatingDiscoveryServer"], "false");
    assert!(inst["lastDirtyTimestamp"].is_string());
    assert!(inst["lastUpdatedTimestamp"].is_string());
    assert!(inst["leaseInfo"]["registrationTimestamp"].is_number());
    assert_eq!(inst["actionType"], "ADDED");
    assert_eq!(
        inst["dataCenterInfo"],
        serde_json::json!({"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"})
    );

    let xml = get(&fake, "apps/", None).await.text();
    assert!(!xml.starts_with("<?xml"));
    assert!(xml.contains("<port enabled=\"true\">8080</port>"), "{xml}");
    assert!(
        xml.contains("<securePort enabled=\"false\">443</securePort>"),
        "{xml}"
    );
    assert!(
        xml.contains("<overriddenstatus>UNKNOWN</overriddenstatus>"),
        "{xml}"
    );
    assert!(xml.contains(
        "<dataCenterInfo class=\"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo\">"
    ));
}

#[tokio::test]
async fn layouts_match_real_fixtures() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("foo", "localhost", 8080).secure_vip(""));
    let ours_json = get(&fake, "apps/", Some("application/json")).await.text();
    let steeltoe =
        std::fs::read_to_string(format!("{FIXTURES}/steeltoe/apps-foo-added.json")).unwrap();
    assert_eq!(
        first_instance_keys(&ours_json),
        first_instance_keys(&steeltoe)
    );
    let top = |s: &str| {
        let at = s.find("\"applications\"").unwrap();
        first_instance_keys(&format!("{{\"instance\":{}", &s[at + 15..]))
    };
    assert_eq!(top(&ours_json), top(&steeltoe));

    let ours_xml = get(&fake, "apps/", None).await.text();
    let prometheus =
        std::fs::read_to_string(format!("{FIXTURES}/prometheus/apps-full.xml")).unwrap();
    assert_eq!(
        first_children(&ours_xml, "instance"),
        first_children(&prometheus, "instance")
    );
    assert_eq!(
        first_children(&ours_xml, "applications"),
        vec!["versions__delta", "apps__hashcode", "application"]
    );
    assert_eq!(
        first_children(&ours_xml, "leaseInfo"),
        first_children(&prometheus, "leaseInfo")
    );
    // XStream pretty-printing: two-space indentation.
    assert!(ours_xml.starts_with("<applications>\n  <versions__delta>1</versions__delta>\n"));
}

#[tokio::test]
async fn metadata_keys_are_xstream_escaped_in_xml_and_plain_in_json() {
    let fake = FakeEureka::start().await;
    fake.add(
        TestInstance::new("ws-svc", "ws.local", 10012)
            .meta("apiml.routes.ws_v1.gatewayUrl", "ws/v1")
            .meta("apiml.routes.ws_v1.serviceUrl", "/ws")
            .meta("odd$key", "a&b<c>\"d'"),
    );
    fake.add(TestInstance::new("plain", "plain.local", 80));

    let xml = get(&fake, "apps/", None).await.text();
    assert!(
        xml.contains("<apiml.routes.ws__v1.gatewayUrl>ws/v1</apiml.routes.ws__v1.gatewayUrl>"),
        "{xml}"
    );
    assert!(
        xml.contains("<odd_-key>a&amp;b&lt;c&gt;&quot;d&apos;</odd_-key>"),
        "{xml}"
    );
    assert!(
        xml.contains("<metadata class=\"java.util.Collections$EmptyMap\"/>"),
        "{xml}"
    );

    let v = get_json(&fake, "apps/").await;
    let apps = v["applications"]["application"].as_array().unwrap();
    let ws = apps.iter().find(|a| a["name"] == "WS-SVC").unwrap();
    let meta = &ws["instance"][0]["metadata"];
    assert_eq!(meta["apiml.routes.ws_v1.gatewayUrl"], "ws/v1");
    assert_eq!(meta["odd$key"], "a&b<c>\"d'");
    let plain = apps.iter().find(|a| a["name"] == "PLAIN").unwrap();
    assert_eq!(
        plain["instance"][0]["metadata"],
        serde_json::json!({"@class": "java.util.Collections$EmptyMap"})
    );

    assert_eq!(
        crate::support::eureka::xstream_encode_name("a_b$c d"),
        "a__b_-c_.0020d"
    );
    assert_eq!(
        crate::support::eureka::xstream_decode_name("a__b_-c_.0020d"),
        "a_b$c d"
    );
}

#[tokio::test]
async fn hashcode_counts_statuses_in_name_order() {
    let fake = FakeEureka::start().await;
    assert_eq!(
        get_json(&fake, "apps/").await["applications"]["apps__hashcode"],
        ""
    );
    let xml = get(&fake, "apps/", None).await.text();
    assert_eq!(xml_hash(&xml), "");
    assert!(xml.contains("<apps__hashcode></apps__hashcode>"));

    fake.add(TestInstance::new("a", "h1", 1));
    fake.add(TestInstance::new("a", "h2", 2).status("DOWN"));
    fake.add(TestInstance::new("b", "h3", 3));
    assert_eq!(fake.apps_hashcode(), "DOWN_1_UP_2_");
    assert_eq!(
        get_json(&fake, "apps/").await["applications"]["apps__hashcode"],
        "DOWN_1_UP_2_"
    );
    assert_eq!(
        xml_hash(&get(&fake, "apps", None).await.text()),
        "DOWN_1_UP_2_"
    );

    assert!(fake.override_status("B", "h3:b:3", "OUT_OF_SERVICE"));
    assert_eq!(
        xml_hash(&get(&fake, "apps/", None).await.text()),
        "DOWN_1_OUT_OF_SERVICE_1_UP_1_"
    );
}

fn body_without(inst: &TestInstance, path: &[&str]) -> String {
    let mut v: Value = serde_json::from_str(&inst.to_json()).unwrap();
    let (last, parents) = path.split_last().unwrap();
    let mut node = &mut v["instance"];
    for p in parents {
        node = &mut node[*p];
    }
    node.as_object_mut().unwrap().remove(*last);
    v.to_string()
}

async fn post(fake: &FakeEureka, app: &str, content_type: &str, body: String) -> Reply {
    send(
        client()
            .post(fake.url(&format!("apps/{app}")))
            .header("Content-Type", content_type)
            .body(body),
    )
    .await
}

#[tokio::test]
async fn register_validates_like_eureka() {
    let fake = FakeEureka::start().await;
    let inst = TestInstance::new("ws-svc", "ws.local", 10012).meta("k_1", "v");

    let r = post(&fake, "ws-svc", "application/json", inst.to_json()).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    // Names are upper-cased; lookups are case-insensitive.
    let v = get_json(&fake, "apps/Ws-Svc").await;
    assert_eq!(v["application"]["name"], "WS-SVC");
    assert_eq!(v["application"]["instance"][0]["metadata"]["k_1"], "v");
    let r = get(&fake, "apps/ws-svc/ws.local:ws-svc:10012", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("<instance>"));

    let xml_inst = TestInstance::new("other", "o.local", 81).secure(8443);
    let r = post(&fake, "OTHER", "application/xml", xml_inst.to_xml()).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let got = fake
        .instance("other", "o.local:other:81")
        .expect("registered");
    assert_eq!((got.secure_port, got.secure_port_enabled), (8443, true));

    for missing in [
        &["hostName"][..],
        &["ipAddr"],
        &["app"],
        &["dataCenterInfo"],
        &["dataCenterInfo", "name"],
    ] {
        let r = post(
            &fake,
            "ws-svc",
            "application/json",
            body_without(&inst, missing),
        )
        .await;
        assert_eq!(r.status, 400, "without {missing:?}");
    }
    let r = post(&fake, "ANOTHER", "application/json", inst.to_json()).await;
    assert_eq!(r.status, 400, "mismatched app");
    assert!(r.text().contains("Mismatched appName"));
    for junk in [
        "not json",
        "{\"instance\":[]}",
        "<instance><port>x</port></instance>",
        "",
    ] {
        let ct = if junk.starts_with('<') {
            "application/xml"
        } else {
            "application/json"
        };
        let r = post(&fake, "ws-svc", ct, junk.to_string()).await;
        assert_eq!(r.status, 400, "{junk:?}");
    }

    // Like InstanceInfo.getId(): without instanceId, the id is the host name.
    let r = post(
        &fake,
        "ws-svc",
        "application/json",
        body_without(&inst.clone().id("x"), &["instanceId"]),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(fake.instance("WS-SVC", "ws.local").is_some());
    assert_eq!(fake.instance_count(), 3);
}

#[tokio::test]
async fn registration_round_trips_through_both_formats() {
    let source = FakeEureka::start().await;
    source.add(
        TestInstance::new("ws-svc", "ws.local", 10012)
            .secure(10013)
            .port_enabled(false)
            .meta("apiml.routes.ws_v1.gatewayUrl", "ws/v1")
            .meta("a$b", "x & <y>")
            .vip("ws-svc,gateway"),
    );
    let original = source.instance("WS-SVC", "ws.local:ws-svc:10012").unwrap();
    for (accept, ct) in [
        ("application/xml", "application/xml"),
        ("application/json", "application/json"),
    ] {
        let body = get(&source, "apps/WS-SVC/ws.local:ws-svc:10012", Some(accept))
            .await
            .text();
        let target = FakeEureka::start().await;
        let r = post(&target, "WS-SVC", ct, body).await;
        assert_eq!(r.status, 204, "{accept}: {}", r.text());
        let copy = target.instance("ws-svc", "ws.local:ws-svc:10012").unwrap();
        // serde_json's map does not keep key order, so compare as sets.
        let sorted = |m: &[(String, String)]| {
            let mut m = m.to_vec();
            m.sort();
            m
        };
        assert_eq!(
            sorted(&copy.metadata),
            sorted(&original.metadata),
            "{accept}"
        );
        assert_eq!(copy.vip_address, original.vip_address);
        assert_eq!(
            (
                copy.port,
                copy.port_enabled,
                copy.secure_port,
                copy.secure_port_enabled
            ),
            (10012, false, 10013, true)
        );
        assert_eq!(copy.last_dirty_timestamp, original.last_dirty_timestamp);
    }
}

#[tokio::test]
async fn heartbeat_cancel_and_reads_of_unknown_things() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("svc", "h", 1).dirty(1_700_000_000_000));
    let c = client();
    let hb = |path: &str| c.put(fake.url(path));

    for req in [
        hb("apps/SVC/nope?status=UP&lastDirtyTimestamp=1"),
        hb("apps/NOAPP/nope"),
        c.delete(fake.url("apps/SVC/nope")),
        c.get(fake.url("apps/NOAPP")),
        c.get(fake.url("apps/SVC/nope")),
        c.put(fake.url("apps/SVC/nope/status?value=OUT_OF_SERVICE")),
        c.delete(fake.url("apps/SVC/nope/status")),
        c.get(fake.url("instances/nope")),
    ] {
        let r = send(req).await;
        assert_eq!(r.status, 404);
        assert!(r.body.is_empty());
        assert_eq!(r.content_type, None);
    }

    let id = "h:svc:1";
    let ok = send(hb(&format!(
        "apps/SVC/{id}?status=UP&lastDirtyTimestamp=1700000000000"
    )))
    .await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.is_empty());
    assert_eq!(send(hb(&format!("apps/svc/{id}"))).await.status, 200);
    let older = format!("apps/SVC/{id}?status=UP&lastDirtyTimestamp=1699999999999");
    assert_eq!(send(hb(&older)).await.status, 200);
    let newer = format!("apps/SVC/{id}?status=UP&lastDirtyTimestamp=1700000000001");
    let r = send(hb(&newer)).await;
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    assert_eq!(r.content_type, None);
    let bad = format!("apps/SVC/{id}?lastDirtyTimestamp=soon");
    assert_eq!(send(hb(&bad)).await.status, 500);
    // A renewal moves lastRenewalTimestamp to now + duration (Eureka's Lease.renew()).
    let lease = fake.instance("svc", id).unwrap();
    assert!(lease.last_renewal_timestamp > lease.registration_timestamp + 80_000);

    let r = send(c.delete(fake.url(&format!("apps/SVC/{id}")))).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&fake, &format!("apps/SVC/{id}"), None).await.status,
        404
    );
    assert_eq!(get(&fake, "apps/SVC", None).await.status, 404);
    assert_eq!(send(hb(&format!("apps/SVC/{id}"))).await.status, 404);
}

#[tokio::test]
async fn status_override_rules() {
    let fake = FakeEureka::start().await;
    let inst = TestInstance::new("svc", "h", 1);
    fake.add(inst.clone());
    let c = client();
    let id = "h:svc:1";

    let r = send(c.put(fake.url(&format!("apps/SVC/{id}/status?value=OUT_OF_SERVICE")))).await;
    assert_eq!(r.status, 200);
    let got = fake.instance("SVC", id).unwrap();
    assert_eq!(
        (got.status.as_str(), got.overridden_status.as_str()),
        ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
    );
    assert_eq!(got.action_type, "MODIFIED");

    // The override survives a re-registration that reports UP.
    assert_eq!(
        post(&fake, "SVC", "application/json", inst.to_json())
            .await
            .status,
        204
    );
    assert_eq!(fake.instance("SVC", id).unwrap().status, "OUT_OF_SERVICE");

    // Deleting the override without a value leaves status UNKNOWN; the next heartbeat is
    // refused so that the client re-registers.
    let r = send(c.delete(fake.url(&format!("apps/SVC/{id}/status")))).await;
    assert_eq!(r.status, 200);
    let got = fake.instance("SVC", id).unwrap();
    assert_eq!(
        (got.status.as_str(), got.overridden_status.as_str()),
        ("UNKNOWN", "UNKNOWN")
    );
    assert_eq!(
        send(c.put(fake.url(&format!("apps/SVC/{id}"))))
            .await
            .status,
        404
    );
    assert_eq!(
        post(&fake, "SVC", "application/json", inst.to_json())
            .await
            .status,
        204
    );
    assert_eq!(fake.instance("SVC", id).unwrap().status, "UP");
    assert_eq!(
        send(c.put(fake.url(&format!("apps/SVC/{id}"))))
            .await
            .status,
        200
    );

    let r = send(c.put(fake.url(&format!("apps/SVC/{id}/status")))).await;
    assert_eq!(r.status, 500, "missing value");

    // A metadata update registers the instance again, as in Eureka: the delta says ADDED and
    // the client's lastDirtyTimestamp stays (checked against the real server in
    // tests/real_eureka.rs).
    fake.clear_delta();
    let dirty = fake.instance("SVC", id).unwrap().last_dirty_timestamp;
    let r = send(c.put(fake.url(&format!("apps/SVC/{id}/metadata?zone=z1")))).await;
    assert_eq!(r.status, 200);
    let now = fake.instance("SVC", id).unwrap();
    assert_eq!(now.meta_value("zone"), Some("z1"));
    assert_eq!(now.last_dirty_timestamp, dirty);
    let delta = get_json(&fake, "apps/delta").await;
    let entry = &delta["applications"]["application"][0]["instance"][0];
    assert_eq!(entry["instanceId"], id);
    assert_eq!(entry["actionType"], "ADDED");
    assert_eq!(entry["metadata"]["zone"], "z1");
}

#[tokio::test]
async fn delta_repeats_recent_changes_and_carries_the_full_hash() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("a", "h1", 1));
    fake.add(TestInstance::new("a", "h2", 2));
    fake.add(TestInstance::new("b", "h3", 3));

    let first = get_json(&fake, "apps/delta").await;
    let added = &first["applications"]["application"];
    assert_eq!(added.as_array().unwrap().len(), 2);
    assert_eq!(added[0]["instance"][1]["actionType"], "ADDED");

    fake.clear_delta();
    assert!(fake.set_status("a", "h2:a:2", "DOWN"));
    let v1 = fake.delta_version();
    for _ in 0..2 {
        let d = get_json(&fake, "apps/delta").await;
        let apps = &d["applications"];
        assert_eq!(
            apps["apps__hashcode"], "DOWN_1_UP_2_",
            "hash of the full registry"
        );
        assert_eq!(apps["versions__delta"], v1.to_string());
        let list = apps["application"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["name"], "A");
        let insts = list[0]["instance"].as_array().unwrap();
        assert_eq!(insts.len(), 1);
        assert_eq!(insts[0]["instanceId"], "h2:a:2");
        assert_eq!(insts[0]["status"], "DOWN");
        assert_eq!(insts[0]["actionType"], "MODIFIED");
    }

    // A later change to the same instance replaces the earlier one; deletions show up.
    assert!(fake.remove("a", "h2:a:2"));
    let xml = get(&fake, "apps/delta", None).await.text();
    assert_eq!(
        xml.matches("<instanceId>h2:a:2</instanceId>").count(),
        1,
        "{xml}"
    );
    assert!(xml.contains("<actionType>DELETED</actionType>"));
    assert_eq!(xml_hash(&xml), "UP_2_");

    fake.set_delta_hash_override(Some("BOGUS"));
    assert_eq!(
        xml_hash(&get(&fake, "apps/delta", None).await.text()),
        "BOGUS"
    );
    assert_eq!(xml_hash(&get(&fake, "apps/", None).await.text()), "UP_2_");
    fake.set_delta_hash_override(None);

    // Changes leave the delta once they are older than the window.
    fake.set_delta_window(Duration::from_millis(30));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let d = get_json(&fake, "apps/delta").await;
    assert_eq!(d["applications"]["application"], serde_json::json!([]));
    assert_eq!(d["applications"]["apps__hashcode"], "UP_2_");

    fake.set_delta_disabled(true);
    let r = get(&fake, "apps/delta", None).await;
    assert_eq!(r.status, 403);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn gzip_only_when_asked_and_only_for_the_registry() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("svc", "h", 1));
    let c = client();
    for (path, accept) in [
        ("apps/", "application/xml"),
        ("apps/delta", "application/json"),
    ] {
        let r = send(
            c.get(fake.url(path))
                .header("Accept", accept)
                .header("Accept-Encoding", "gzip"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_encoding.as_deref(), Some("gzip"), "{path}");
        assert_eq!(r.content_type.as_deref(), Some(accept));
        let text = gunzip(&r.body);
        assert!(
            text.contains("\"apps__hashcode\"") || text.starts_with("<applications>"),
            "{text}"
        );

        let plain = send(c.get(fake.url(path)).header("Accept", accept)).await;
        assert_eq!(plain.content_encoding, None);
        assert_eq!(String::from_utf8(plain.body).unwrap(), text);
    }
    let r = send(
        c.get(fake.url("apps/SVC"))
            .header("Accept-Encoding", "gzip"),
    )
    .await;
    assert_eq!(r.content_encoding, None);
    assert!(r.text().starts_with("<application>"));
}

#[tokio::test]
async fn vips_select_instances_by_vip_address() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("a", "h1", 1).vip("gw,api"));
    fake.add(TestInstance::new("b", "h2", 2).vip("api").status("DOWN"));
    fake.add(TestInstance::new("c", "h3", 3).vip("other"));
    let v = get_json(&fake, "vips/api").await;
    let apps = &v["applications"];
    assert_eq!(apps["versions__delta"], "-1");
    assert_eq!(apps["apps__hashcode"], "DOWN_1_UP_1_");
    assert_eq!(apps["application"].as_array().unwrap().len(), 2);
    let none = get_json(&fake, "vips/nothing").await;
    assert_eq!(none["applications"]["application"], serde_json::json!([]));
    let inst = get_json(&fake, "instances/h3:c:3").await;
    assert_eq!(inst["instance"]["app"], "C");
}

#[tokio::test]
async fn failure_modes() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("svc", "h", 1));

    fake.set_mode(Mode::Fail(503));
    let r = get(&fake, "apps/", None).await;
    assert_eq!(r.status, 503);
    assert!(r.body.is_empty());

    fake.set_mode(Mode::Garbage);
    let r = get(&fake, "apps/", Some("application/json")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.body, crate::support::eureka::GARBAGE);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    let fixture = std::fs::read(format!("{FIXTURES}/prometheus/apps-full.xml")).unwrap();
    fake.set_mode(Mode::Canned {
        status: 200,
        content_type: "application/xml".into(),
        body: fixture.clone(),
    });
    assert_eq!(get(&fake, "apps/", None).await.body, fixture);

    fake.set_mode(Mode::Stall);
    let started = std::time::Instant::now();
    let err = client()
        .get(fake.url("apps/"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("stalled");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(fake.requests().iter().any(|r| r.path == "/eureka/apps/"));

    // Refuse: a pooled connection is closed and new connections are refused.
    fake.set_mode(Mode::Normal);
    let pooled = client();
    assert_eq!(send(pooled.get(fake.url("apps/"))).await.status, 200);
    fake.set_mode(Mode::Refuse);
    assert!(pooled.get(fake.url("apps/")).send().await.is_err());
    let err = client()
        .get(fake.url("apps/"))
        .send()
        .await
        .expect_err("refused");
    assert!(err.is_connect(), "{err:?}");
    let raw = tokio::net::TcpStream::connect(fake.addr()).await;
    assert_eq!(
        raw.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );

    fake.set_mode(Mode::Normal);
    assert_eq!(get(&fake, "apps/", None).await.status, 200);
}

#[tokio::test]
async fn requests_are_logged_and_drop_stops_the_server() {
    let fake = FakeEureka::start().await;
    assert!(fake.service_url().starts_with("http://127.0.0.1:"));
    assert!(fake.service_url().ends_with("/eureka/"));
    fake.add(TestInstance::new("svc", "h", 1));
    get(&fake, "apps/delta", Some("application/json")).await;
    send(client().put(fake.url("apps/SVC/h:svc:1?status=UP&lastDirtyTimestamp=1"))).await;
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (
            log[0].method.as_str(),
            log[0].path.as_str(),
            log[0].accept.as_deref()
        ),
        ("GET", "/eureka/apps/delta", Some("application/json"))
    );
    assert_eq!(log[1].method, "PUT");
    assert_eq!(
        log[1].path,
        "/eureka/apps/SVC/h:svc:1?status=UP&lastDirtyTimestamp=1"
    );
    assert!(
        fake.wait_for_requests(Duration::from_millis(50), |r| r.len() == 2)
            .await
    );
    fake.clear_requests();
    assert!(fake.requests().is_empty());

    let addr = fake.addr();
    drop(fake);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn bad_input_gets_an_error_status_not_a_crash() {
    let fake = FakeEureka::start().await;
    fake.add(TestInstance::new("svc", "h", 1));
    let c = client();
    let deep = "<a>".repeat(200) + &"</a>".repeat(200);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/xml", b"<instance>&nosuch;</instance>".to_vec()),
        ("application/xml", b"<instance><a></b></instance>".to_vec()),
        ("application/xml", deep.into_bytes()),
        (
            "application/xml",
            b"<instance><port>99999</port></instance>".to_vec(),
        ),
        ("application/json", b"\xff\xfe\x00".to_vec()),
        (
            "application/json",
            b"{\"instance\":{\"port\":{\"$\":[1]}}}".to_vec(),
        ),
        ("text/plain", b"   ".to_vec()),
    ];
    for (ct, body) in bodies {
        let r = send(
            c.post(fake.url("apps/SVC"))
                .header("Content-Type", ct)
                .body(body),
        )
        .await;
        assert_eq!(r.status, 400);
    }
    for path in [
        "apps/%",
        "apps/%zz/%e2%82",
        "apps/\u{e9}t\u{e9}/x",
        "apps/SVC/h:svc:1/status?value=%ff",
        "apps/SVC/h:svc:1?lastDirtyTimestamp=99999999999999999999999",
        "nope",
        "apps/a/b/c/d/e",
    ] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            // Any answer will do (a panic would drop the connection instead).
            let r = send(c.request(method.clone(), fake.url(path))).await;
            assert!(
                r.status == 200 || (400..=500).contains(&r.status),
                "{method} {path}: {}",
                r.status
            );
        }
    }
    let r = send(c.get(format!("http://{}/other/apps/", fake.addr()))).await;
    assert_eq!(r.status, 404);
    assert_eq!(get(&fake, "apps/", None).await.status, 200);
}
