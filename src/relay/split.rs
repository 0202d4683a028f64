//! A leg split between the session's two pumps without a one-message slot (issue 14 item 4).

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::Message;

use crate::ws::leg::ReadProgress;

/// One half of a leg split between the two pumps of a session (both run in one task).
/// Unlike futures' `StreamExt::split`, the sink half keeps no slot of its own: its
/// `poll_ready` is the leg's, so a pump reads a message only when the destination can take it
/// and a stalled session holds one message, not two (issue 14 item 4).
pub struct Half<L>(std::sync::Arc<std::sync::Mutex<L>>);

/// Splits `leg` into a sink half and a stream half (see [`Half`]).
pub fn split_leg<L>(leg: L) -> (Half<L>, Half<L>) {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(leg));
    (Half(std::sync::Arc::clone(&shared)), Half(shared))
}

impl<L> Half<L> {
    /// The leg again from its two halves; `Err` gives back `self` when `other` is a half of
    /// another leg or the leg is shared still.
    pub fn reunite(self, other: Half<L>) -> Result<L, Half<L>> {
        if !std::sync::Arc::ptr_eq(&self.0, &other.0) {
            return Err(self);
        }
        drop(other);
        match std::sync::Arc::try_unwrap(self.0) {
            Ok(m) => Ok(m.into_inner().unwrap_or_else(|p| p.into_inner())),
            Err(shared) => Err(Half(shared)),
        }
    }

    fn locked<R>(&self, f: impl FnOnce(&mut L) -> R) -> R {
        // The lock is never held across an await, and a panic inside it poisons nothing the
        // other half could misread: take the leg as it is.
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl<L: Stream + Unpin> Stream for Half<L> {
    type Item = L::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<L::Item>> {
        Half::locked(&self, |l| std::pin::Pin::new(l).poll_next(cx))
    }
}

impl<L: ReadProgress> ReadProgress for Half<L> {
    fn bytes_read(&self) -> u64 {
        Half::locked(self, |l| l.bytes_read())
    }
}

impl<L: Sink<Message> + Unpin> Sink<Message> for Half<L> {
    type Error = L::Error;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), L::Error>> {
        Half::locked(&self, |l| {
            Sink::<Message>::poll_ready(std::pin::Pin::new(l), cx)
        })
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), L::Error> {
        Half::locked(&self, |l| {
            Sink::<Message>::start_send(std::pin::Pin::new(l), item)
        })
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), L::Error>> {
        Half::locked(&self, |l| {
            Sink::<Message>::poll_flush(std::pin::Pin::new(l), cx)
        })
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), L::Error>> {
        Half::locked(&self, |l| {
            Sink::<Message>::poll_close(std::pin::Pin::new(l), cx)
        })
    }
}
