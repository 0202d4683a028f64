//! Registry decoding: a generated 10,000-instance registry (1,000 applications × 10
//! instances, see `common`) in XStream XML and legacy JSON, through
//! `wsrelay::registry::decode` (format detected from content, as the file and Eureka sources
//! do). Target (issue 7): ≤ 50 ms per decode.
//!
//! `cargo bench --bench registry`

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn decode(c: &mut Criterion) {
    let xml = common::registry_xml(common::APPS, common::PER_APP);
    let json = common::registry_json(common::APPS, common::PER_APP);
    for (name, body) in [("xml", &xml), ("json", &json)] {
        let snap = wsrelay::registry::decode(body.as_bytes()).unwrap();
        assert_eq!(
            snap.instance_count(),
            common::APPS * common::PER_APP,
            "{name}"
        );
        eprintln!(
            "registry {name}: {} bytes, {} applications, {} instances",
            body.len(),
            snap.applications.len(),
            snap.instance_count()
        );
    }
    let mut g = c.benchmark_group("registry_decode_10k");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, body) in [("xml", &xml), ("json", &json)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| wsrelay::registry::decode(std::hint::black_box(body.as_bytes())))
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
