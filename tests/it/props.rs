//! Property tests (proptest) over the parsers at the edge, the same entry points as the
//! `cargo fuzz` targets in `fuzz/`: the Eureka XML and JSON decoders, route lookup and path
//! checks, the config parser, the client upgrade validation, and close reasons.
//!
//! Inputs are random bytes and strings, and mutations (byte flips, cuts, insertions) of the
//! real Eureka fixtures and the example config. Properties: never panic, and what is accepted
//! keeps its invariants (a resolved upstream path never climbs out of the service URL; an
//! accepted upgrade has a valid key and version). Files in `tests/corpus/<target>/` (edge
//! inputs, and `regression-*` inputs that once got through and must now be refused) are
//! replayed by every run, as are proptest's own seeds in `tests/props.proptest-regressions`
//! (the `..%3b` path parameter bypass was found this way).

use std::path::Path;

use proptest::prelude::*;
use wsrelay::registry::{self, Snapshot};
use wsrelay::routing::{LookupError, RouteTable};

fn fixtures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eureka");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "xml")) {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out.sort();
    assert!(out.len() >= 8, "fixtures missing");
    out
}

/// The committed corpus files of one target (`tests/corpus/<name>/*`): (file name, bytes).
fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A mutation of a seed: flip, insert or delete bytes, or cut it.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Cut(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(b"<".to_vec()),
                Just(b"{".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"</".to_vec()),
                Just(b"&#0;".to_vec()),
                Just(b"<![CDATA[".to_vec()),
                Just(b"\\u0000".to_vec()),
                Just(b"99999999999999999999".to_vec()),
            ]
        )
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Cut),
    ];
    proptest::collection::vec(edit, 1..6)
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let len = v.len().max(1);
        match e {
            Edit::Flip(i, b) => {
                if let Some(x) = v.get_mut(i % len) {
                    *x ^= b | 1;
                }
            }
            Edit::Insert(i, bytes) => {
                let at = i % (v.len() + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(v.len());
                if at < end {
                    v.drain(at..end);
                }
            }
            Edit::Cut(i) => v.truncate(i % len),
        }
    }
    v
}

/// Decodes with every decoder; what decodes also builds a routing table.
fn decode_all(bytes: &[u8]) {
    for s in [
        registry::decode(bytes),
        registry::xml::decode(bytes),
        registry::json::decode(bytes),
    ]
    .into_iter()
    .flatten()
    {
        let table = RouteTable::build(&s);
        let _ = wsrelay::render_routes(&table, "prop", &s);
    }
}

#[test]
fn corpus_replays() {
    for (_, input) in corpus("registry") {
        decode_all(&input);
    }
    let paths = corpus("path");
    assert!(paths.len() >= 3, "tests/corpus/path is missing");
    for (name, input) in paths {
        let path = String::from_utf8_lossy(&input);
        check_resolve(&path);
        // Regression inputs are paths that once resolved and must be refused.
        if name.starts_with("regression-") {
            assert!(
                matches!(table_resolve(&path), Err(LookupError::BadPath(_))),
                "{name}: {path}"
            );
        }
    }
    for (_, input) in corpus("config") {
        let _ = wsrelay::config::Config::from_toml(&String::from_utf8_lossy(&input), None);
    }
}

fn table_resolve(path: &str) -> Result<(), LookupError> {
    thread_local!(static TABLE: RouteTable = table());
    TABLE.with(|t| t.resolve(path, None).map(drop))
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let n = 200_000;
    let json = format!(
        "{{\"applications\":{{\"application\":{}{}}}}}",
        "[".repeat(n),
        "]".repeat(n)
    );
    assert!(registry::decode(json.as_bytes()).is_err());
    let xml = format!(
        "<applications><application>{}{}</application></applications>",
        "<a>".repeat(n),
        "</a>".repeat(n)
    );
    // Unknown elements are skipped; whatever the result, it returns.
    let _ = registry::decode(xml.as_bytes());
    let xml = format!(
        "{}{}",
        "<applications>".repeat(n),
        "</applications>".repeat(n)
    );
    let _ = registry::decode(xml.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn registry_decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        let mut with_json = b"{\"applications\":".to_vec();
        with_json.extend_from_slice(&bytes);
        decode_all(&with_json);
        let mut with_xml = b"<applications>".to_vec();
        with_xml.extend_from_slice(&bytes);
        decode_all(&with_xml);
    }

    #[test]
    fn registry_decoders_never_panic_on_mutated_fixtures(seed in 0usize..64, edits in edits()) {
        let fx = fixtures();
        let input = apply(&fx[seed % fx.len()], &edits);
        decode_all(&input);
    }
}

fn table() -> RouteTable {
    let xml = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/eureka/prometheus/apps-full.xml"),
    )
    .unwrap();
    let mut s: Snapshot = registry::decode(&xml).unwrap();
    // Give every instance a WebSocket route so lookups get past the service match.
    for app in &mut s.applications {
        for inst in &mut app.instances {
            inst.metadata
                .insert("apiml.routes.ws_v1.gatewayUrl".into(), "ws/v1".into());
            inst.metadata
                .insert("apiml.routes.ws_v1.serviceUrl".into(), "/svc/ws".into());
            inst.metadata
                .insert("apiml.routes.deep.gatewayUrl".into(), "/ws/v1/deep/".into());
            inst.metadata
                .insert("apiml.routes.deep.serviceUrl".into(), "".into());
        }
    }
    let t = RouteTable::build(&s);
    // The properties below are only worth something if these resolve.
    assert!(t.resolve("/config-service/ws/v1/x", None).is_ok());
    assert!(t.resolve("/ws/v1/meta-service/x", None).is_ok());
    assert!(t.resolve("/Config-Service/ws/v1/deep/x", None).is_ok());
    t
}

/// Percent-decodes (lossily) for the invariant check.
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

/// Resolves `path`; if it resolves, the upstream path starts with the route's service URL and
/// has no segment a server could read as `..`.
fn check_resolve(path: &str) {
    thread_local!(static TABLE: RouteTable = table());
    TABLE.with(|t| match t.resolve(path, Some("q=%2e%2e")) {
        Ok(r) => {
            let route = r.route().unwrap();
            assert!(
                r.upstream_path.starts_with(&route.service_url),
                "{path} -> {}",
                r.upstream_path
            );
            let (p, _) = r.upstream_path.split_once('?').unwrap();
            let decoded = decode_percent(p);
            for seg in decoded.split(['/', '\\']) {
                let name = seg.split(';').next().unwrap_or(seg);
                assert_ne!(name, "..", "{path} -> {}", r.upstream_path);
            }
        }
        Err(LookupError::BadPath(_)) | Err(LookupError::NoRoute) => {}
    });
}

fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("%25".to_owned()),
        Just("%3b".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        Just("%c0%ae".to_owned()),
        Just("%".to_owned()),
        Just("ws".to_owned()),
        Just("v1".to_owned()),
        Just("deep".to_owned()),
        Just("CONFIG-SERVICE".to_owned()),
        Just("config-service".to_owned()),
        Just("Config-Service".to_owned()),
        "[a-zA-Z0-9._~-]{0,6}",
        "[\\x00-\\x7f]{0,3}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

/// Paths built segment by segment, with the dot-segment spellings servers are known to
/// resolve (plain, percent-encoded in any case, with `;` path parameters).
fn segment_path_strategy() -> impl Strategy<Value = String> {
    let dots = prop_oneof![
        Just(".."),
        Just("%2e%2e"),
        Just(".%2E"),
        Just("%2E."),
        Just("."),
        Just("..."),
    ];
    let params = prop_oneof![
        Just(""),
        Just(";"),
        Just(";jsessionid=1"),
        Just("%3b"),
        Just("%3Bx"),
        Just("%20"),
    ];
    let segment = prop_oneof![
        (dots, params).prop_map(|(d, p)| format!("{d}{p}")),
        "[a-z0-9._~-]{1,6}",
        path_strategy(),
    ];
    (
        prop_oneof![
            Just("/config-service/ws/v1"),
            Just("/ws/v1/meta-service"),
            Just("")
        ],
        proptest::collection::vec(segment, 0..8),
    )
        .prop_map(|(prefix, segs)| format!("{prefix}/{}", segs.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn route_lookup_never_climbs_with_dot_segments(path in segment_path_strategy()) {
        check_resolve(&path);
    }

    #[test]
    fn route_lookup_never_panics_and_never_climbs(path in path_strategy()) {
        check_resolve(&path);
        check_resolve(&format!("/config-service/ws/v1/{path}"));
        check_resolve(&format!("/ws/v1/meta-service/{path}"));
    }
}

fn config_seed() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wsrelay.toml"))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn config_parser_never_panics(edits in edits(), random in "\\PC{0,200}") {
        let seed = config_seed();
        let mutated = apply(seed.as_bytes(), &edits);
        let _ = wsrelay::config::Config::from_toml(&String::from_utf8_lossy(&mutated), None);
        let _ = wsrelay::config::Config::from_toml(&random, None);
        let _ = wsrelay::config::Config::from_toml(&format!("[tls]\nenabled = false\n[registry]\nfile = \"r\"\n{random}"), None);
    }
}

fn header_strategy() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        Just("host".to_owned()),
        Just("upgrade".to_owned()),
        Just("connection".to_owned()),
        Just("sec-websocket-key".to_owned()),
        Just("sec-websocket-version".to_owned()),
        Just("sec-websocket-protocol".to_owned()),
        Just("sec-websocket-extensions".to_owned()),
        Just("content-length".to_owned()),
        Just("transfer-encoding".to_owned()),
        "[a-z-]{1,12}",
    ];
    let value = prop_oneof![
        Just(b"websocket".to_vec()),
        Just(b"Upgrade".to_vec()),
        Just(b"keep-alive, Upgrade".to_vec()),
        Just(b"13".to_vec()),
        Just(b"8".to_vec()),
        Just(b"dGhlIHNhbXBsZSBub25jZQ==".to_vec()),
        Just(b"0".to_vec()),
        Just(b"chat, , superchat,".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    (name, value)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn upgrade_validation_never_panics_and_accepts_only_valid_upgrades(
        method in prop_oneof![Just("GET"), Just("POST"), Just("HEAD")],
        v11 in any::<bool>(),
        headers in proptest::collection::vec(header_strategy(), 0..12),
    ) {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/x")
            .version(if v11 { http::Version::HTTP_11 } else { http::Version::HTTP_10 });
        for (k, v) in &headers {
            // Values the http crate refuses (CR, LF, NUL...) never reach the validator.
            if let Ok(v) = http::HeaderValue::from_bytes(v) {
                b = b.header(k.as_str(), v);
            }
        }
        let req = b.body(()).unwrap();
        if let Ok(u) = wsrelay::session::handshake::validate_upgrade(&req) {
            let h = req.headers();
            prop_assert_eq!(req.method(), http::Method::GET);
            prop_assert_eq!(req.version(), http::Version::HTTP_11);
            prop_assert_eq!(u.key.as_ref().map(http::HeaderValue::len), Some(24));
            prop_assert_eq!(h.get_all("host").iter().count(), 1);
            prop_assert_eq!(h.get("sec-websocket-version").unwrap(), "13");
            prop_assert!(u.protocols.iter().all(|p| !p.is_empty() && p.trim() == p));
            // The 101 answer for an accepted key is always well-formed.
            let r: http::Response<()> = wsrelay::session::handshake::switching_protocols(u.key.as_ref(), None, None);
            prop_assert_eq!(r.headers()["sec-websocket-accept"].len(), 28);
        }
    }

    #[test]
    fn close_reasons_fit_a_control_frame(reason in "\\PC{0,200}") {
        let cut = wsrelay::close::truncate_reason(&reason);
        prop_assert!(cut.len() <= 123);
        prop_assert!(reason.starts_with(cut));
        // Only what does not fit is cut: at most 3 bytes short of the limit (one char).
        prop_assert!(cut.len() == reason.len() || cut.len() >= 120);
        let f = wsrelay::close::close_frame(
            tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            &reason,
        );
        prop_assert!(f.reason.len() <= 123);
    }
}
