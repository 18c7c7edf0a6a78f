//! Watching a topic from a test.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::codec::Outgoing;
use crate::mailbox::Mailbox;
use crate::message::{FromMessage, IntoMessage, Message};
use crate::test::client::{describe, short_type_name};
use crate::test::expect::Expect;
use crate::topics::{Recipient, Sealed, Subscriber};

/// What a topic receives, watched from a test: see [`TestServer::watch`](super::TestServer::watch). Dropping it
/// unsubscribes.
pub struct TopicWatch<T> {
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) queue: VecDeque<Outgoing>,
    pub(super) timeout: Duration,
    pub(super) topic: String,
    pub(super) _message: PhantomData<fn(T)>,
}

impl<T> Sealed for TopicWatch<T> {}

impl<T: IntoMessage> Subscriber<T> for TopicWatch<T> {
    fn recipient(&self) -> Recipient<'_> {
        Recipient(&self.mailbox)
    }
}

impl<T> TopicWatch<T> {
    /// Receives the next message published to the topic, as `U`.
    ///
    /// # Panics
    /// If nothing is published within the timeout, or the message does not decode as `U`.
    #[track_caller]
    pub fn recv<U: FromMessage>(&mut self) -> impl Future<Output = U> + '_ {
        let at = Location::caller();
        Expect::new(async move {
            let timeout = self.timeout;
            let Some(message) = self.next(timeout).await else {
                return Err(format!(
                    "expected a message on the topic {:?} within {timeout:?} (at {at}); \
                     nothing was published",
                    self.topic
                ));
            };
            let shown = describe(&message);
            U::from_message(message).map_err(|err| {
                format!(
                    "expected a message that decodes as `{}` (at {at}); the topic {:?} got \
                     {shown}, which does not: {err}",
                    short_type_name::<U>(),
                    self.topic
                )
            })
        })
    }

    /// Expects nothing to be published to the topic for `quiet`.
    ///
    /// # Panics
    /// If a message is published.
    #[track_caller]
    pub fn expect_nothing(&mut self, quiet: Duration) -> impl Future<Output = ()> + '_ {
        let at = Location::caller();
        Expect::new(async move {
            match self.next(quiet).await {
                Some(message) => Err(format!(
                    "expected nothing on the topic {:?} for {quiet:?} (at {at}); got {}",
                    self.topic,
                    describe(&message)
                )),
                None => Ok(()),
            }
        })
    }

    async fn next(&mut self, wait: Duration) -> Option<Message> {
        let next = poll_fn(|cx| {
            loop {
                if let Some(outgoing) = self.queue.pop_front() {
                    return Poll::Ready(match outgoing {
                        Outgoing::Message(message) => message,
                        Outgoing::Published(published) => published.message.clone(),
                    });
                }
                let _ = self.mailbox.drain(&mut self.queue);
                if self.queue.is_empty() && self.mailbox.park(cx) {
                    return Poll::Pending;
                }
            }
        });
        tokio::time::timeout(wait, next).await.ok()
    }
}

impl<T> Drop for TopicWatch<T> {
    fn drop(&mut self) {
        self.mailbox.finish();
    }
}

impl<T> fmt::Debug for TopicWatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicWatch")
            .field("topic", &self.topic)
            .finish()
    }
}
