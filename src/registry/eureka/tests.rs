use super::*;
use crate::registry::{Instance, Status};
use std::collections::BTreeSet;

#[test]
fn credentials_are_split_and_redacted() {
    assert_eq!(
        redact("https://u:p@host:8761/eureka/"),
        "https://host:8761/eureka/"
    );
    assert_eq!(redact("http://host/eureka/"), "http://host/eureka/");
    let (clean, c) = credentials("https://user:se:cret@h/eureka/");
    assert_eq!(clean, "https://h/eureka/");
    assert_eq!(c, Some(("user".into(), "se:cret".into())));
    assert_eq!(credentials("http://h/e/").1, None);
}

fn inst(app: &str, id: &str, status: Status, action: Option<ActionType>) -> Instance {
    Instance {
        instance_id: id.into(),
        app: app.into(),
        host_name: "h".into(),
        status,
        action_type: action,
        ..Instance::default()
    }
}

fn snap(apps: &[(&str, Vec<Instance>)]) -> Snapshot {
    Snapshot {
        applications: apps
            .iter()
            .map(|(n, i)| Application {
                name: (*n).into(),
                instances: i.clone(),
            })
            .collect(),
        ..Snapshot::default()
    }
}

fn ids(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .applications
        .iter()
        .flat_map(|a| {
            a.instances
                .iter()
                .map(move |i| format!("{}/{}/{}", a.name, i.instance_id, i.status))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn hash_counts_statuses_in_name_order() {
    assert_eq!(reconcile_hash(&Snapshot::default()), "");
    let s = snap(&[
        (
            "A",
            vec![
                inst("A", "1", Status::Up, None),
                inst("A", "2", Status::Down, None),
                inst("A", "3", Status::Up, None),
            ],
        ),
        (
            "B",
            vec![
                // As a real server holds it: own status DOWN, an override UP.
                Instance {
                    overridden_status: Status::Up,
                    ..inst("B", "4", Status::Down, None)
                },
                inst("B", "5", Status::OutOfService, None),
            ],
        ),
    ]);
    assert_eq!(reconcile_hash(&s), "DOWN_2_OUT_OF_SERVICE_1_UP_2_");
}

#[test]
fn delta_upserts_deletes_in_order_and_is_idempotent() {
    use ActionType::*;
    let mut reg = snap(&[
        (
            "A",
            vec![
                inst("A", "a1", Status::Up, None),
                inst("A", "a2", Status::Up, None),
            ],
        ),
        ("B", vec![inst("B", "b1", Status::Up, None)]),
    ]);
    let delta = snap(&[
        (
            "a",
            vec![
                inst("A", "a1", Status::Down, Some(Modified)),
                inst("A", "a3", Status::Up, Some(Added)),
                // Deleted, then added again: the later entry wins.
                inst("A", "a2", Status::Up, Some(Deleted)),
                inst("A", "a2", Status::Starting, Some(Added)),
            ],
        ),
        ("B", vec![inst("B", "b1", Status::Up, Some(Deleted))]),
        (
            "C",
            vec![
                inst("C", "c1", Status::Up, Some(Added)),
                inst("C", "c2", Status::Up, Some(Added)),
                inst("C", "c2", Status::Up, Some(Deleted)),
                inst("C", "c9", Status::Up, None),
            ],
        ),
    ]);
    apply_delta(&mut reg, &delta);
    let once = ids(&reg);
    assert_eq!(
        once,
        ["A/a1/DOWN", "A/a2/STARTING", "A/a3/UP", "C/c1/UP"],
        "B disappears with its last instance; c2 added then deleted; c9 has no action"
    );
    apply_delta(&mut reg, &delta);
    assert_eq!(ids(&reg), once);
    assert_eq!(reconcile_hash(&reg), "DOWN_1_STARTING_1_UP_2_");
}

#[test]
fn zone_order_puts_own_zone_first() {
    let zones: Vec<String> = ["a", "b", "a", "c", "b"]
        .iter()
        .map(|s| (*s).into())
        .collect();
    for seed in 0..20 {
        let order = server_order(
            &zones,
            Some("b"),
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed),
        );
        let mut first: Vec<usize> = order[..2].to_vec();
        first.sort();
        assert_eq!(first, [1, 4]);
        let mut all = order.clone();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }
    let orders: BTreeSet<Vec<usize>> = (0..50)
        .map(|s| {
            server_order(
                &zones,
                None,
                &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(s),
            )
        })
        .collect();
    assert!(orders.len() > 1, "without a zone the servers are shuffled");
}

#[test]
fn failover_sticks_to_a_working_server_and_quarantines_failures() {
    let mut f = Failover::new(vec![0, 1, 2, 3, 4]);
    assert_eq!(f.candidates(), [0, 1, 2]);
    f.failed(0);
    assert!(f.succeeded(1));
    // Sticks to 1; 0 is quarantined.
    assert_eq!(f.candidates(), [1, 2, 3]);
    assert!(!f.succeeded(1));
    f.failed(1);
    f.failed(2);
    // 3 of 5 quarantined (threshold 3): cleared, everything is tried again in order.
    assert_eq!(f.candidates(), [0, 1, 2]);
    // Two servers: a single failure reaches the threshold (1), as in Eureka.
    let mut two = Failover::new(vec![1, 0]);
    two.failed(1);
    assert_eq!(two.candidates(), [1, 0]);
    assert!(two.succeeded(0));
    assert_eq!(two.candidates(), [0, 1]);
}

#[test]
fn delay_doubles_on_timeouts_up_to_the_bound_and_resets() {
    let i = Duration::from_secs(30);
    let mut d = i;
    for expected in [60, 120, 240, 300, 300] {
        d = next_delay(d, i, 10, true);
        assert_eq!(d, Duration::from_secs(expected));
    }
    assert_eq!(next_delay(d, i, 10, false), i);
}

#[test]
fn path_segments_are_encoded() {
    assert_eq!(path_segment("host:app:10010"), "host:app:10010");
    assert_eq!(path_segment("a b/c?d%"), "a%20b%2Fc%3Fd%25");
}
