//! The client's upgrade request as the listener sees it: raw bytes parsed by httparse (as
//! hyper does), turned into an `http::Request`, then `validate_upgrade` and the route lookup.
//! Never panics; an accepted upgrade always has a valid key, version 13 and one Host.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let mut b = http::Request::builder()
        .method(req.method.unwrap_or("GET"))
        .uri(req.path.unwrap_or("/"))
        .version(if req.version == Some(1) {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_10
        });
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    let Ok(request) = b.body(()) else {
        return;
    };
    if let Ok(u) = wsrelay::session::handshake::validate_upgrade(&request) {
        assert_eq!(u.key.len(), 24);
        assert_eq!(request.headers().get_all("host").iter().count(), 1);
        assert_eq!(request.headers()["sec-websocket-version"], "13");
        let _: http::Response<()> = wsrelay::session::handshake::switching_protocols(&u.key, None);
    }
    let _ = wsrelay::routing::RouteTable::default()
        .resolve(request.uri().path(), request.uri().query());
});
