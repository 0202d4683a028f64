//! Eureka XML decoder: any bytes decode or fail with an error, never panic; what decodes
//! builds a routing table.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = wsrelay::registry::xml::decode(data) {
        let t = wsrelay::routing::RouteTable::build(&s);
        let _ = wsrelay::render_routes(&t, "fuzz", &s);
    }
    let _ = wsrelay::registry::decode(data);
});
