//! Server code listening to a topic: a typed stream of what is published to it, on this node
//! and, through the broker, on every other.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;

use crate::codec::Outgoing;
use crate::mailbox::{LISTENER, Mailbox};
use crate::message::{DecodeError, FromMessage, IntoMessage, Message};
use crate::topics::{Recipient, Sealed, Subscriber, Topic};

/// What [`Topic::listen`] returns: every message published to the topic from then on, in the
/// order this node receives them, as values of `T`.
///
/// Messages wait in a bounded queue ([`Topic::listen_with_capacity`]; 1,024 by default, as a
/// connection's) until [`recv`](Listener::recv) takes them. A publish never waits for a
/// listener: one that falls behind by a full queue is dropped from the topic, as a slow
/// connection is (it gets no more messages at once, and leaves the topic's subscribers at its
/// next `recv`), and [`recv`](Listener::recv) then returns [`ListenError::Lagged`], from then
/// on; make a new listener (and catch up from your own store, if what was missed matters).
/// Dropping the listener leaves the topic.
///
/// ```
/// # use wsock::prelude::*;
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Vote { poll: u64, option: usize }
/// # async fn demo(server: &Server) {
/// let votes = server.topics().topic::<Json<Vote>>("votes");
/// let mut listener = votes.listen();
/// tokio::spawn(async move {
///     while let Ok(Json(vote)) = listener.recv().await {
///         // Every vote published on any node that shares the broker, once.
///         # let _ = vote;
///     }
/// });
/// # }
/// ```
pub struct Listener<T> {
    pub(crate) mailbox: Arc<Mailbox>,
    /// Taken from the mailbox, not yet returned.
    queue: VecDeque<Outgoing>,
    topic: String,
    _message: PhantomData<fn() -> T>,
}

/// Why [`Listener::recv`] returned no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenError {
    /// The listener fell behind by a full queue and was dropped from the topic: messages were
    /// lost. It stays so; make a new listener.
    Lagged,
    /// A message did not decode as the listener's type (published by a node that runs
    /// another version, say); the listener goes on with the next.
    Decode(DecodeError),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Lagged => f.write_str(
                "the listener fell behind by a full queue and was dropped from the topic",
            ),
            ListenError::Decode(error) => write!(f, "a message did not decode: {error}"),
        }
    }
}

impl std::error::Error for ListenError {}

impl<T: IntoMessage> Topic<T> {
    /// Listens to this topic from server code: see [`Listener`]. Its queue holds 1,024
    /// messages.
    pub fn listen(&self) -> Listener<T> {
        self.listen_with_capacity(1024)
    }

    /// [`listen`](Topic::listen), with a queue of `capacity` messages.
    pub fn listen_with_capacity(&self, capacity: usize) -> Listener<T> {
        let listener = Listener {
            mailbox: Arc::new(Mailbox::new(LISTENER, capacity)),
            queue: VecDeque::new(),
            topic: self.name().to_owned(),
            _message: PhantomData,
        };
        self.subscribe(&listener);
        listener
    }
}

impl<T> Sealed for Listener<T> {}

impl<T> Subscriber<T> for Listener<T> {
    fn recipient(&self) -> Recipient<'_> {
        Recipient(&self.mailbox)
    }
}

impl<T: FromMessage> Listener<T> {
    /// The next message published to the topic; waits for one. Cancel-safe: a message is
    /// taken only when it is returned.
    pub async fn recv(&mut self) -> Result<T, ListenError> {
        let message = self.recv_message().await?;
        T::from_message(message).map_err(ListenError::Decode)
    }

    /// The next message if one is waiting, without waiting: `None` if none is.
    pub fn try_recv(&mut self) -> Option<Result<T, ListenError>> {
        if self.mailbox.is_abandoned() {
            return Some(Err(self.lagged()));
        }
        if self.queue.is_empty() {
            let _ = self.mailbox.drain(&mut self.queue);
        }
        let message = self.pop()?;
        Some(T::from_message(message).map_err(ListenError::Decode))
    }
}

impl<T> Listener<T> {
    /// The next message published to the topic, undecoded (the test kit's watch decodes it
    /// as the type it is asked for).
    pub(crate) async fn recv_message(&mut self) -> Result<Message, ListenError> {
        poll_fn(|cx| {
            loop {
                if self.mailbox.is_abandoned() {
                    return Poll::Ready(Err(self.lagged()));
                }
                if let Some(message) = self.pop() {
                    return Poll::Ready(Ok(message));
                }
                let _ = self.mailbox.drain(&mut self.queue);
                if self.queue.is_empty() && !self.mailbox.is_abandoned() && self.mailbox.park(cx) {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// The queue overflowed: the publish that found it full shut the mailbox; leaving the
    /// topic is done here, where no publish holds the topic's subscribers.
    fn lagged(&mut self) -> ListenError {
        self.queue.clear();
        self.mailbox.finish();
        ListenError::Lagged
    }

    /// The next message taken from the queue: what a latest-only subscription holds is
    /// taken now, the newest.
    fn pop(&mut self) -> Option<Message> {
        loop {
            match self.queue.pop_front()? {
                Outgoing::Newest(newest) => {
                    let mut taken = Vec::new();
                    newest.take(&mut taken);
                    for published in taken.into_iter().rev() {
                        self.queue.push_front(Outgoing::Published(published));
                    }
                }
                outgoing => return Some(message_of(outgoing)),
            }
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// What a queued message carries: a published one is shared with the topic's other
/// subscribers.
fn message_of(outgoing: Outgoing) -> Message {
    match outgoing {
        Outgoing::Message(message) => message,
        Outgoing::Published(published) => published.message.clone(),
        Outgoing::Newest(_) => unreachable!("taken by `pop`"),
    }
}

impl<T> Drop for Listener<T> {
    fn drop(&mut self) {
        // Leaves the topic.
        self.mailbox.finish();
    }
}

impl<T> fmt::Debug for Listener<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("topic", &self.topic)
            .field("queued", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Json;
    use crate::topics::Topics;

    /// A message that does not decode as the listener's type (another node's version, say)
    /// is an error for that message only: the next one is received.
    #[tokio::test]
    async fn a_message_that_does_not_decode_is_skipped_with_its_error() {
        let topics = Topics::default();
        let topic = topics.topic::<Json<u32>>("numbers");
        let mut listener = topic.listen();
        listener
            .mailbox
            .push(Outgoing::Message(Message::Text("not json".into())));
        topic.publish(Json(7)).unwrap();
        let error = listener.recv().await.unwrap_err();
        assert!(matches!(error, ListenError::Decode(_)), "{error}");
        assert!(
            error.to_string().starts_with("a message did not decode: "),
            "{error}"
        );
        assert_eq!(listener.recv().await.unwrap().0, 7);
    }
}
