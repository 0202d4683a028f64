//! Every session carries its relay future for its whole life, so its size is per-session
//! memory (issue 7: at most 4 KiB per idle ws session, both legs included). These bounds keep
//! a change from quietly growing it (measured: pump 168 bytes, relay 1,240 bytes).

use super::*;
use tokio_tungstenite::tungstenite::protocol::Role;

type L = crate::ws::leg::Leg<tokio::io::DuplexStream>;

#[tokio::test]
async fn the_relay_future_of_an_idle_session_stays_small() {
    let (a, _b) = tokio::io::duplex(16);
    let (c, _d) = tokio::io::duplex(16);
    let counters = Counters::default();
    let token = CancellationToken::new();
    let cfg = RelayConfig::default();
    let (mut c_tx, mut c_rx) = split_leg(L::new(a, Role::Server, Default::default()));
    let activity = Activity::new();
    let h = Heard::new(activity.start);
    let mut step = Step::Read;
    let p = pump(
        &mut c_rx,
        &mut c_tx,
        &counters.messages_in,
        &counters.bytes_in,
        &activity,
        &cfg,
        &h,
        &h,
        &mut step,
    );
    assert!(
        std::mem::size_of_val(&p) <= 256,
        "pump: {} bytes",
        std::mem::size_of_val(&p)
    );
    drop(p);
    let Ok(client) = c_tx.reunite(c_rx) else {
        panic!("halves of one leg")
    };
    let service = L::new(c, Role::Client, Default::default());
    let f = relay(client, service, &counters, &cfg, &token);
    assert!(
        std::mem::size_of_val(&f) <= 1536,
        "relay: {} bytes",
        std::mem::size_of_val(&f)
    );
    assert!(std::mem::size_of::<L>() <= 192);
}
