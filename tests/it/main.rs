//! wsrelay's integration tests, one binary (`cargo test --test it`; one file:
//! `cargo test --test it e2e::`). Each file is a module named after what it tests; the shared
//! helpers (certificates, test services, the in-process agent, the fake and the real Eureka,
//! raw hostile peers) are in `tests/support/`, fixtures in `tests/fixtures/`.
//!
//! Where a new test goes: next to the tests of the same behaviour (the module list below says
//! what each covers in its own doc); a new file only for a new area, added to this list.

#[path = "../support/mod.rs"]
mod support;
// Helpers only this binary needs (the bench smoke test shares `support` alone).
#[path = "../support/certs.rs"]
mod certs;
#[path = "../support/hostile.rs"]
mod hostile;
#[path = "../support/spring.rs"]
mod spring;

mod autobahn;
mod chromium;
mod cli;
mod e2e;
mod eureka_client;
mod eureka_interop;
mod failover;
mod fake_eureka;
mod handshake_policy;
mod hostile_frames;
mod hostile_handshake;
mod hostile_registry;
mod hostile_secrets;
mod hostile_services;
mod hostile_tls;
mod http2;
mod limits;
mod operations;
mod prometheus;
mod props;
mod real_eureka;
mod registry_fixtures;
mod reload;
mod zowe_v3;
