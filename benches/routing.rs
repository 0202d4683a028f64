//! Route table build and lookup on the generated 10,000-instance registry (1,000 services,
//! see `common`). Targets (issue 7): build ≤ 10 ms, lookup ≤ 1 µs.
//!
//! `cargo bench --bench routing`

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use wsrelay::routing::RouteTable;

fn routing(c: &mut Criterion) {
    let xml = common::registry_xml(common::APPS, common::PER_APP);
    let snapshot = wsrelay::registry::decode(xml.as_bytes()).unwrap();
    assert_eq!(snapshot.instance_count(), common::APPS * common::PER_APP);

    let mut g = c.benchmark_group("route_table_10k");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("build", |b| {
        b.iter(|| RouteTable::build(black_box(&snapshot)))
    });
    g.finish();

    let table = RouteTable::build(&snapshot);
    assert_eq!(table.len(), common::APPS);
    let paths = [
        ("v1_form", "/ws/v1/service0500/updates/stream", Some("x=1")),
        ("current_form", "/service0500/ws/v1/updates/stream", None),
        ("mixed_case_id", "/ws/v1/SERVICE0999/a", None),
        ("no_route", "/ws/v1/no-such-service/a", None),
    ];
    for (_, p, q) in &paths[..3] {
        assert!(table.resolve(p, *q).is_ok(), "{p}");
    }
    assert!(table.resolve(paths[3].1, None).is_err());
    let mut g = c.benchmark_group("route_lookup_10k");
    for (name, path, query) in paths {
        g.bench_function(name, |b| {
            b.iter(|| {
                let _ = black_box(table.resolve(black_box(path), black_box(query)));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
