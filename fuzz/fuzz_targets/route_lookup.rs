//! Route lookup and path checks: any path resolves or is refused, never panics, and a
//! resolved upstream path starts with the route's service URL and has no `..` segment
//! (plain, percent-encoded, or with `;` parameters).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wsrelay::routing::RouteTable;

fn table() -> &'static RouteTable {
    static T: OnceLock<RouteTable> = OnceLock::new();
    T.get_or_init(|| {
        let xml = "<applications><application><name>SVC</name><instance>\
            <instanceId>i</instanceId><hostName>h</hostName><app>SVC</app><status>UP</status>\
            <port enabled=\"true\">80</port><securePort enabled=\"false\">443</securePort>\
            <metadata><apiml.routes.a.gatewayUrl>ws/v1</apiml.routes.a.gatewayUrl>\
            <apiml.routes.a.serviceUrl>/svc/ws</apiml.routes.a.serviceUrl>\
            <apiml.routes.b.gatewayUrl>/ws/v1/deep/</apiml.routes.b.gatewayUrl>\
            <apiml.routes.b.serviceUrl></apiml.routes.b.serviceUrl></metadata>\
            </instance></application></applications>";
        let s = wsrelay::registry::decode(xml.as_bytes()).unwrap_or_default();
        RouteTable::build(&s)
    })
}

fn decode_percent(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for p in [
        path.to_owned(),
        format!("/svc/ws/v1/{path}"),
        format!("/ws/v1/svc/{path}"),
    ] {
        if let Ok(r) = table().resolve(&p, None) {
            let route = r.route().expect("route index");
            assert!(r.upstream_path.starts_with(&route.service_url));
            for seg in decode_percent(&r.upstream_path).split(['/', '\\']) {
                assert_ne!(seg.split(';').next().unwrap_or(seg), "..", "{p}");
            }
        }
    }
});
