//! The subscriber connection: a connection of its own to Redis, in subscribe mode, that
//! delivers each message to this server's subscribers before it reads the next bytes.
//!
//! Reading no faster than the server delivers is what bounds the receiving side: a server
//! that falls behind leaves the backlog in Redis, whose `client-output-buffer-limit` for
//! pubsub clients (32 MB by default) drops the connection when it grows too large; this
//! connection then logs that messages were lost, connects again and subscribes again. (A
//! client library that reads as fast as Redis sends and queues what the server has not
//! delivered yet would grow without bound instead.)
//!
//! It speaks RESP3 (Redis 6 or later), which lets a connection in subscribe mode run commands
//! too: the scripts that say where a topic's history stands run here, so that their answers
//! come in order with the topic's messages (see `wsock_runtime::Broker::locate`).

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::counters::{Counters, Line, lock};
use crate::error::Error;
use crate::resp::{self, Answer, Reply};
use crate::scripts;

/// How long a connection attempt, or `AUTH`, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Reconnection delays, doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_LAST: Duration = Duration::from_secs(1);
/// Silence after which the connection pings Redis, and how long the answer may take.
const PING_AFTER: Duration = Duration::from_secs(1);
const PONG_WITHIN: Duration = Duration::from_secs(3);
/// How much one read takes in.
const READ_CHUNK: usize = 64 << 10;
/// A connection that lasted this long earns a quick retry when it ends.
const STABLE: Duration = Duration::from_secs(10);
/// How a connection's end says Redis refused it.
const REFUSED: &str = "Redis refused";
/// Payloads shorter than this are copied out of the read buffer: a slice would keep the whole
/// 64 KiB buffer alive for as long as a slow subscriber keeps the message queued.
const COPY_BELOW: usize = 16 << 10;

/// Where the subscriber connects, and how it logs in.
pub(crate) struct Target {
    address: Address,
    username: Option<String>,
    password: Option<String>,
}

enum Address {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Target {
    pub(crate) fn new(info: &ConnectionInfo, shown: &str) -> Result<Target, Error> {
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Address::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Address::Unix(path.clone()),
            _ => {
                return Err(Error {
                    message: format!("{shown}: only redis:// and redis+unix:// are supported"),
                });
            }
        };
        let settings = info.redis_settings();
        Ok(Target {
            address,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
        })
    }
}

/// What the subscriber connection shares with the broker.
pub(crate) struct Subscriptions {
    pub(crate) target: Target,
    /// The address, for logs (without a password).
    pub(crate) shown: String,
    /// Channels this node wants (it has subscribers to their topics).
    pub(crate) wanted: Mutex<HashSet<String>>,
    /// `wanted` changed.
    pub(crate) changed: Notify,
    /// Where messages go, once the server started the broker.
    pub(crate) delivery: OnceLock<Delivery>,
    pub(crate) stats: Arc<Counters>,
    /// Questions about topics' histories not sent yet, oldest first.
    pub(crate) locates: Mutex<VecDeque<Asked>>,
    /// Which topics Redis keeps history for, as far as this node knows.
    pub(crate) known: Mutex<scripts::Known>,
}

/// The sink, and the prefix to strip from channel names to find topic names.
pub(crate) struct Delivery {
    pub(crate) sink: wsock_runtime::Sink,
    pub(crate) prefix: String,
    /// The channel of the announcements of topics whose history is kept.
    pub(crate) announcements: String,
}

/// A question about a topic's history (`Broker::locate`).
pub(crate) struct Asked {
    pub(crate) topic: String,
    pub(crate) locate: wsock_runtime::Locate,
}

/// What this connection sent that Redis answers, in order.
enum Sent {
    Ping,
    Locate(Asked),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// Why a connection ended.
type Ended = String;

/// Keeps a subscriber connection to Redis for as long as the broker lives: connects, follows
/// `wanted`, delivers, and connects again after any failure, sooner after a connection that
/// held up than after one that did not.
pub(crate) async fn run(subscriptions: Arc<Subscriptions>) {
    let mut retry = RETRY_FIRST;
    // The connection dropped while it held subscriptions: say so once they are back.
    let mut lost = false;
    loop {
        let started = Instant::now();
        match connect(&subscriptions.target).await {
            Ok(stream) => {
                let mut session = Session {
                    subscriptions: &subscriptions,
                    stream,
                    buffer: BytesMut::with_capacity(READ_CHUNK),
                    requested: HashSet::new(),
                    confirmed: HashSet::new(),
                    sent: VecDeque::new(),
                    lost: &mut lost,
                };
                let ended = session.run().await;
                // (The announcements' channel is always held; topics' channels count.)
                let held = session.confirmed.len().saturating_sub(1);
                // Questions this connection did not get answers to are asked again on the
                // next, after its subscriptions (the answers cover what came meanwhile).
                let unanswered = std::mem::take(&mut session.sent);
                let mut locates = lock(&subscriptions.locates);
                for sent in unanswered.into_iter().rev() {
                    if let Sent::Locate(asked) = sent {
                        locates.push_front(asked);
                    }
                }
                drop(locates);
                ended_with(&subscriptions, &ended, held, &mut lost);
                // Only a connection that held up earns a quick retry: one that Redis takes
                // and then refuses (a wrong password, `maxclients`, an ACL) backs off as a
                // failed connect does, rather than reconnect thousands of times a second.
                if started.elapsed() >= STABLE {
                    retry = RETRY_FIRST;
                }
            }
            Err(error) => {
                refused(&subscriptions, &error);
                tracing::debug!(redis = subscriptions.shown, %error, "subscriber connection failed");
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_LAST);
    }
}

/// Puts questions not sent back at the front of the queue, in their order.
fn requeue(subscriptions: &Subscriptions, asked: Vec<Asked>) {
    let mut locates = lock(&subscriptions.locates);
    for asked in asked.into_iter().rev() {
        locates.push_front(asked);
    }
}

/// Says how a connection ended: a loss of subscriptions at warn, a refusal at warn (at most
/// once a minute), anything else at debug.
fn ended_with(subscriptions: &Subscriptions, ended: &str, held: usize, lost: &mut bool) {
    if held > 0 {
        subscriptions
            .stats
            .disconnections
            .fetch_add(1, Ordering::Relaxed);
        *lost = true;
        // Topic histories start again: no client resumes across what is lost from now on.
        if let Some(delivery) = subscriptions.delivery.get() {
            delivery.sink.lost();
        }
        tracing::warn!(
            redis = subscriptions.shown,
            error = ended,
            channels = held,
            "the connection to Redis dropped: what other servers publish until this server has \
             subscribed again is lost for its subscribers (Redis drops a subscriber that falls \
             behind: its client-output-buffer-limit for pubsub); reconnecting"
        );
    } else {
        refused(subscriptions, ended);
        tracing::debug!(
            redis = subscriptions.shown,
            error = ended,
            "subscriber connection ended"
        );
    }
}

/// A connection Redis refused (its answer is an error): logged at warn, at most once a minute,
/// since it will be refused again until the configuration changes.
fn refused(subscriptions: &Subscriptions, error: &str) {
    if error.starts_with(REFUSED) && subscriptions.stats.log(Line::Refused).is_some() {
        tracing::warn!(
            redis = subscriptions.shown,
            error,
            "Redis refuses the subscriber connection: messages from other servers do not \
             reach this server; retrying every second"
        );
    }
}

async fn connect(target: &Target) -> Result<Box<dyn Stream>, Ended> {
    let connecting = async {
        let mut stream: Box<dyn Stream> = match &target.address {
            Address::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
            Address::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        };
        // RESP3, to run commands while subscribed; logged in at the same time.
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &target.password {
            args.extend([
                &b"AUTH"[..],
                target.username.as_deref().unwrap_or("default").as_bytes(),
            ]);
            args.push(password.as_bytes());
        }
        stream.write_all(&resp::command(args.into_iter())).await?;
        let mut buffer = BytesMut::with_capacity(1024);
        loop {
            if stream.read_buf(&mut buffer).await? == 0 {
                return Err(std::io::Error::other(
                    "Redis closed the connection at HELLO",
                ));
            }
            match resp::parse(&mut buffer) {
                Ok(None) => continue,
                Ok(Some(Reply::Answer(Answer::Error(error)))) => {
                    return Err(std::io::Error::other(format!(
                        "{REFUSED} HELLO 3 (RESP3, Redis 6 or later, is needed): {error}"
                    )));
                }
                Ok(Some(Reply::Answer(_))) => break,
                Ok(Some(_)) | Err(_) => {
                    return Err(std::io::Error::other("an unexpected answer to HELLO"));
                }
            }
        }
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    }
}

/// One connection, from connected to ended.
struct Session<'a> {
    subscriptions: &'a Subscriptions,
    stream: Box<dyn Stream>,
    buffer: BytesMut,
    /// Channels this connection asked to subscribe to (and not to unsubscribe from since).
    requested: HashSet<String>,
    /// Channels Redis confirmed.
    confirmed: HashSet<String>,
    /// Commands sent and not answered yet, oldest first.
    sent: VecDeque<Sent>,
    lost: &'a mut bool,
}

impl Session<'_> {
    async fn run(&mut self) -> Ended {
        let mut last_heard = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut tick = tokio::time::interval(PING_AFTER);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Err(error) = self.follow_wanted().await {
            return error;
        }
        if self.requested.is_empty() {
            // Nothing to subscribe to again: nothing to announce either.
            *self.lost = false;
        }
        loop {
            if self.buffer.capacity() - self.buffer.len() < READ_CHUNK / 4 {
                self.buffer.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = self.stream.read_buf(&mut self.buffer) => match read {
                    Ok(0) => return "Redis closed the connection".to_owned(),
                    Err(error) => return error.to_string(),
                    Ok(_) => {
                        last_heard = Instant::now();
                        ping_sent = None;
                        if let Err(error) = self.take_replies() {
                            return error;
                        }
                        // What was delivered is written by the connections' tasks: let them
                        // run between reads.
                        tokio::task::yield_now().await;
                    }
                },
                () = self.subscriptions.changed.notified() => {
                    if let Err(error) = self.follow_wanted().await {
                        return error;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if ping_sent.is_some_and(|sent| now - sent >= PONG_WITHIN) {
                        return "no answer to PING in time".to_owned();
                    }
                    if ping_sent.is_none() && now - last_heard >= PING_AFTER {
                        let ping: [&[u8]; 1] = [b"PING"];
                        if let Err(error) = self.send(resp::command(ping.into_iter())).await {
                            return error;
                        }
                        self.sent.push_back(Sent::Ping);
                        ping_sent = Some(now);
                    }
                }
            }
        }
    }

    /// Acts on every whole reply read: delivers messages (before anything more is read),
    /// notes confirmations.
    fn take_replies(&mut self) -> Result<(), Ended> {
        while let Some(reply) = resp::parse(&mut self.buffer).map_err(|e| e.0.to_owned())? {
            match reply {
                Reply::Message { channel, payload } => self.deliver(&channel, payload),
                Reply::Subscribed(channel) => {
                    let channel = String::from_utf8_lossy(&channel).into_owned();
                    if let Some(delivery) = self.subscriptions.delivery.get()
                        && let Some(topic) = channel.strip_prefix(delivery.prefix.as_str())
                    {
                        delivery.sink.subscribed(topic);
                    }
                    self.confirmed.insert(channel);
                    if *self.lost && self.confirmed.len() == self.requested.len() {
                        *self.lost = false;
                        // Positions given out while messages were being lost resume nowhere.
                        if let Some(delivery) = self.subscriptions.delivery.get() {
                            delivery.sink.lost();
                        }
                        tracing::info!(
                            redis = self.subscriptions.shown,
                            channels = self.confirmed.len(),
                            "subscribed again after the connection to Redis dropped: messages \
                             from other servers reach this server's subscribers again"
                        );
                    }
                }
                Reply::Unsubscribed(channel) => {
                    self.confirmed.remove(&*String::from_utf8_lossy(&channel));
                }
                Reply::Push => {}
                Reply::Answer(answer) => match self.sent.pop_front() {
                    Some(Sent::Ping) => {}
                    Some(Sent::Locate(asked)) => self.located(asked, answer),
                    None => match answer {
                        Answer::Error(error) => return Err(format!("{REFUSED}: {error}")),
                        _ => return Err("Redis answered a command never sent".to_owned()),
                    },
                },
            }
        }
        Ok(())
    }

    /// Hands the answer to a question about a topic's history to the server.
    fn located(&self, asked: Asked, answer: Answer) {
        let Some(delivery) = self.subscriptions.delivery.get() else {
            return;
        };
        let answer = scripts::located(answer).map_err(|error| {
            tracing::warn!(
                redis = self.subscriptions.shown,
                topic = asked.topic,
                error,
                "Redis did not say where a topic's history stands"
            );
            wsock_runtime::BrokerError::Unreachable(wsock_runtime::Error::msg(error))
        });
        delivery.sink.located(&asked.topic, answer);
    }

    /// Sends `asked`, questions about topics' histories, in order; those not sent go back to
    /// the front of the queue.
    async fn send_locates(&mut self, asked: Vec<Asked>) -> Result<(), Ended> {
        let Some(delivery) = self.subscriptions.delivery.get() else {
            requeue(self.subscriptions, asked);
            return Ok(());
        };
        let mut asked = asked.into_iter();
        while let Some(one) = asked.next() {
            let command = scripts::locate(&delivery.prefix, &one.topic, &one.locate);
            let sent = self.send(command).await;
            self.sent.push_back(Sent::Locate(one));
            if let Err(error) = sent {
                requeue(self.subscriptions, asked.collect());
                return Err(error);
            }
        }
        Ok(())
    }

    fn deliver(&self, channel: &[u8], payload: bytes::Bytes) {
        let subscriptions = self.subscriptions;
        let Some(delivery) = subscriptions.delivery.get() else {
            return;
        };
        let Some(channel) = std::str::from_utf8(channel).ok() else {
            return;
        };
        if channel == delivery.announcements {
            // A topic whose history Redis keeps from now on: published through the script.
            if let Ok(topic) = std::str::from_utf8(&payload) {
                lock(&subscriptions.known).note(topic, true);
            }
            return;
        }
        let Some(topic) = channel.strip_prefix(delivery.prefix.as_str()) else {
            return;
        };
        subscriptions.stats.received.fetch_add(1, Ordering::Relaxed);
        let copied = |payload: bytes::Bytes| match payload.len() < COPY_BELOW {
            true => bytes::Bytes::copy_from_slice(&payload),
            false => payload,
        };
        match scripts::numbered(&payload) {
            Some((epoch, offset, at)) => {
                let body = copied(payload.slice(at..));
                delivery.sink.deliver_numbered(topic, epoch, offset, body);
            }
            None => delivery.sink.deliver(topic, copied(payload)),
        }
    }

    /// Subscribes to the channels wanted and not requested, unsubscribes from the others, then
    /// asks the questions about topics' histories.
    async fn follow_wanted(&mut self) -> Result<(), Ended> {
        // The questions asked so far, taken before the channels wanted: a topic is wanted before
        // its question is asked (`Broker::locate` comes after `Broker::subscribe`), so each of
        // these goes after its topic's SUBSCRIBE. One taken after would go before the SUBSCRIBE
        // of a topic wanted meanwhile, and its answer would not cover the messages between the
        // two: this node would miss them.
        let asked: Vec<Asked> = lock(&self.subscriptions.locates).drain(..).collect();
        if let Err(error) = self.follow_channels().await {
            requeue(self.subscriptions, asked);
            return Err(error);
        }
        // After the subscriptions: an answer covers what came before it, and what comes after
        // it arrives on this connection.
        self.send_locates(asked).await
    }

    /// Subscribes to the channels wanted and not requested, unsubscribes from the others.
    async fn follow_channels(&mut self) -> Result<(), Ended> {
        let (subscribe, unsubscribe) = {
            let wanted = lock(&self.subscriptions.wanted);
            let subscribe: Vec<String> = wanted.difference(&self.requested).cloned().collect();
            let unsubscribe: Vec<String> = self.requested.difference(&wanted).cloned().collect();
            (subscribe, unsubscribe)
        };
        for (verb, channels) in [("SUBSCRIBE", &subscribe), ("UNSUBSCRIBE", &unsubscribe)] {
            // Never an empty UNSUBSCRIBE: that would be all of them.
            if channels.is_empty() {
                continue;
            }
            let args =
                std::iter::once(verb.as_bytes()).chain(channels.iter().map(String::as_bytes));
            let command = resp::command(args.collect::<Vec<_>>().into_iter());
            self.send(command).await?;
        }
        self.requested.extend(subscribe);
        for channel in &unsubscribe {
            self.requested.remove(channel);
        }
        Ok(())
    }

    async fn send(&mut self, command: Vec<u8>) -> Result<(), Ended> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.stream.write_all(&command)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("Redis did not take a command in time".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis that takes the connection and then ends it at once (a wrong password,
    /// `maxclients`, a proxy with nothing behind it) is not reconnected to in a tight loop:
    /// the delays grow as they do after a failed connect.
    #[tokio::test]
    async fn a_connection_that_ends_at_once_backs_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counting = Arc::clone(&accepted);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counting.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        let subscriptions = Arc::new(Subscriptions {
            target: Target {
                address: Address::Tcp("127.0.0.1".to_owned(), port),
                username: None,
                password: None,
            },
            shown: format!("redis://127.0.0.1:{port}"),
            wanted: Mutex::new(HashSet::from(["wsock:a".to_owned()])),
            changed: Notify::new(),
            delivery: OnceLock::new(),
            stats: Arc::default(),
            locates: Mutex::default(),
            known: Mutex::default(),
        });
        let running = tokio::spawn(run(subscriptions));
        tokio::time::sleep(Duration::from_millis(1600)).await;
        running.abort();
        server.abort();
        // 50 + 100 + 200 + 400 + 800 ms: five or six attempts, not thousands.
        let attempts = accepted.load(Ordering::SeqCst);
        assert!(
            (2..=7).contains(&attempts),
            "{attempts} connections in 1.6 s"
        );
    }
}
