//! Config parser: any text parses or fails with an error naming the key, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wsrelay::config::Config::from_toml(text, None);
    }
});
