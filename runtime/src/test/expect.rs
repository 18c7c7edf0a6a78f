//! Where a failed expectation panics: at the test's own line.
//!
//! `#[track_caller]` does not reach into an `async` block, so a `panic!` inside one reports
//! the kit's file, and an editor jumps there. Each waiting method therefore returns its wait
//! wrapped in [`Expect`], whose `poll` is `#[track_caller]`: `.await` calls `poll` from the
//! test's own code, so the panic is reported at that `.await`. The failure message also names
//! the line that called the method (`(at tests/chat.rs:20:9)`), which is the one that counts
//! when the future is awaited elsewhere (inside `tokio::time::timeout`, say).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A wait that ends in `Ok(value)` or in the failure message to panic with.
pub(super) struct Expect<F> {
    wait: Pin<Box<F>>,
}

impl<F> Expect<F> {
    pub(super) fn new(wait: F) -> Self {
        Expect {
            wait: Box::pin(wait),
        }
    }
}

impl<T, F: Future<Output = Result<T, String>>> Future for Expect<F> {
    type Output = T;

    #[track_caller]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.wait.as_mut().poll(cx) {
            Poll::Ready(Ok(value)) => Poll::Ready(value),
            Poll::Ready(Err(failure)) => panic!("{failure}"),
            Poll::Pending => Poll::Pending,
        }
    }
}
