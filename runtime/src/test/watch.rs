//! Watching a topic from a test.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use crate::listener::Listener;
use crate::message::{FromMessage, IntoMessage, Message};
use crate::test::client::{describe, short_type_name};
use crate::test::expect::Expect;
use crate::topics::{Recipient, Sealed, Subscriber};

/// What a topic receives, watched from a test: see [`TestServer::watch`](super::TestServer::watch). Dropping it
/// unsubscribes.
pub struct TopicWatch<T> {
    /// A topic listener whose queue has no bound: a test's watch never lags.
    pub(super) listener: Listener<T>,
    pub(super) timeout: Duration,
}

impl<T> Sealed for TopicWatch<T> {}

impl<T: IntoMessage> Subscriber<T> for TopicWatch<T> {
    fn recipient(&self) -> Recipient<'_> {
        Recipient(&self.listener.mailbox)
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
                    self.listener.topic()
                ));
            };
            let shown = describe(&message);
            U::from_message(message).map_err(|err| {
                format!(
                    "expected a message that decodes as `{}` (at {at}); the topic {:?} got \
                     {shown}, which does not: {err}",
                    short_type_name::<U>(),
                    self.listener.topic()
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
                    self.listener.topic(),
                    describe(&message)
                )),
                None => Ok(()),
            }
        })
    }

    async fn next(&mut self, wait: Duration) -> Option<Message> {
        // An unbounded queue never overflows: no `Lagged`.
        let next = self.listener.recv_message();
        tokio::time::timeout(wait, next).await.ok()?.ok()
    }
}

impl<T> fmt::Debug for TopicWatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicWatch")
            .field("topic", &self.listener.topic())
            .finish()
    }
}
