//! Counting: a message is counted as relayed only once handed to the destination (issue 14
//! item 5).

use super::*;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;

/// A destination that is ready `readies` times and then never again.
struct Stalls {
    readies: usize,
}

impl ReadProgress for Stalls {
    fn bytes_read(&self) -> u64 {
        0
    }
}

impl Sink<Message> for Stalls {
    type Error = WsError;
    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), WsError>> {
        if self.readies == 0 {
            return std::task::Poll::Pending;
        }
        self.readies -= 1;
        std::task::Poll::Ready(Ok(()))
    }
    fn start_send(self: std::pin::Pin<&mut Self>, _: Message) -> Result<(), WsError> {
        Ok(())
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), WsError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), WsError>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Polls a pump once: `text` waits to be read, the destination takes `readies` calls of
/// `poll_ready` and then stalls. Returns (messages, bytes) counted.
fn one_poll(text: &str, readies: usize) -> (u64, u64) {
    let counters = Counters::default();
    let cfg = RelayConfig::default();
    let activity = Activity::new();
    let h = Heard::new(activity.start);
    let mut rx = futures_util::stream::iter(vec![Ok(Message::text(text))])
        .chain(futures_util::stream::pending());
    let mut tx = Stalls { readies };
    let mut step = Step::Read;
    let p = pump(
        &mut rx,
        &mut tx,
        &counters.messages_in,
        &counters.bytes_in,
        &activity,
        &cfg,
        &h,
        &h,
        &mut step,
    );
    assert!(futures_util::FutureExt::now_or_never(p).is_none());
    (
        counters.messages_in.load(Ordering::Relaxed),
        counters.bytes_in.load(Ordering::Relaxed),
    )
}

/// Issue 14 item 5: a message a pump read but could not hand over when the session ended
/// is not counted as relayed; one handed over is.
#[tokio::test]
async fn a_message_held_when_the_pump_ends_is_not_counted() {
    // Read, then the destination stops taking it; the session ends.
    assert_eq!(one_poll("held", 1), (0, 0));
    assert_eq!(one_poll("sent", 2), (1, 4));
}
