//! Resume: a `resume = true` endpoint's connections get their topics' messages numbered, and a
//! client that reconnects with its positions gets what it missed, once and in order, then the
//! live messages; or it is told, per topic, why not. Plain endpoints keep plain frames. Bad
//! resume input is refused before the upgrade. Over real sockets, a thousand cuts (resets,
//! stalls, drops, closes) while a publisher keeps publishing lose and repeat nothing.
#![cfg(feature = "test")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::History;
use wsock::prelude::*;
use wsock::test::{TestClient, TestServer};

use common::resume::{encode_component as encode, resume_query};

/// A feed that resumes: what became of the client's position is written after the replay
/// (the snapshot path, when it cannot be recovered).
#[websocket("/feed/{name}", resume = true)]
fn feed(name: String, out: Out<String>, topics: Topics) {
    let topic = topics.topic::<String>(format!("feed:{name}"));
    match topic.subscribe(&out) {
        Subscribed::NotRecovered(why) => out.write(format!("snapshot: {why:?}")),
        Subscribed::Recovered { replayed } => out.write(format!("recovered {replayed}")),
        Subscribed::Live => {}
        _ => unreachable!(),
    }
}

/// The same topics, for a plain client.
#[websocket("/plain/{name}")]
fn plain(name: String, out: Out<String>, topics: Topics) {
    topics
        .topic::<String>(format!("feed:{name}"))
        .subscribe(&out);
}

/// A room that resumes: what a member says reaches the others, not itself.
#[websocket("/room/{name}", resume = true)]
fn room(name: String, out: Out<String>, topics: Topics) {
    let topic = topics.topic::<String>(format!("feed:{name}"));
    topic.subscribe(&out);
    on_message(|text: String| {
        topic.publish_except(&out, text)?;
        Ok(())
    });
}

/// What a resumable connection reads.
#[derive(Debug, PartialEq)]
enum Frame {
    /// The notice on subscribing: the topic, its epoch, the offset before the live
    /// messages, and `recovered` (with the reason when `false`), if a position was given.
    Notice {
        topic: String,
        epoch: String,
        offset: u64,
        recovered: Option<bool>,
        reason: Option<String>,
    },
    /// A topic message with its position.
    Message {
        topic: String,
        epoch: String,
        offset: u64,
        body: String,
    },
    /// In place of a message published except this connection: its position.
    Skipped { offset: u64 },
    /// A message written to this connection only.
    Plain(String),
}

/// Reads a frame's text as the README's "Resume" says a client does.
fn parse(text: &str) -> Frame {
    let Some(rest) = text.strip_prefix('\u{1e}') else {
        return Frame::Plain(text.to_owned());
    };
    let (header, body) = rest.split_once('\u{1e}').expect("a header ends with 0x1E");
    let header: Value = serde_json::from_str(header).expect("a JSON header");
    let epoch = header["epoch"].as_str().expect("an epoch").to_owned();
    let offset = header["offset"].as_u64().expect("an offset");
    if let Some(topic) = header["subscribed"].as_str() {
        assert_eq!(body, "", "nothing follows a notice");
        return Frame::Notice {
            topic: topic.to_owned(),
            epoch,
            offset,
            recovered: header["recovered"].as_bool(),
            reason: header["reason"].as_str().map(str::to_owned),
        };
    }
    if header["skipped"] == Value::Bool(true) {
        assert_eq!(body, "", "nothing follows a skip");
        return Frame::Skipped { offset };
    }
    Frame::Message {
        topic: header["topic"].as_str().expect("a topic").to_owned(),
        epoch,
        offset,
        body: body.to_owned(),
    }
}

async fn recv(client: &mut TestClient) -> Frame {
    parse(&client.recv::<String>().await)
}

/// The notice's epoch and offset.
async fn notice(client: &mut TestClient) -> (String, u64, Option<bool>, Option<String>) {
    match recv(client).await {
        Frame::Notice {
            epoch,
            offset,
            recovered,
            reason,
            ..
        } => (epoch, offset, recovered, reason),
        other => panic!("expected the notice, got {other:?}"),
    }
}

/// A topic message's offset and body.
async fn message(client: &mut TestClient) -> (u64, String) {
    match recv(client).await {
        Frame::Message { offset, body, .. } => (offset, body),
        other => panic!("expected a topic message, got {other:?}"),
    }
}

fn server() -> Server {
    Server::new().route(feed).route(plain).route(room)
}

fn publish(app: &TestServer, name: &str, body: &str) {
    app.topics()
        .topic::<String>(format!("feed:{name}"))
        .publish(body.to_owned())
        .unwrap();
}

#[tokio::test]
async fn resumable_connections_get_positions_and_plain_ones_plain_frames() {
    let app = TestServer::new(server());
    let mut resumable = app.connect("/feed/a").await.unwrap();
    let (epoch, offset, recovered, _) = notice(&mut resumable).await;
    assert_eq!(
        (offset, recovered),
        (0, None),
        "a fresh topic, no position asked"
    );
    assert_eq!(epoch.len(), 16);
    let mut plain_client = app.connect("/plain/a").await.unwrap();
    publish(&app, "a", "one");
    publish(&app, "a", "two");
    assert_eq!(
        recv(&mut resumable).await,
        Frame::Message {
            topic: "feed:a".into(),
            epoch: epoch.clone(),
            offset: 1,
            body: "one".into()
        }
    );
    assert_eq!(message(&mut resumable).await, (2, "two".into()));
    assert_eq!(plain_client.recv::<String>().await, "one");
    assert_eq!(plain_client.recv::<String>().await, "two");
}

#[tokio::test]
async fn a_reconnect_gets_what_it_missed_then_the_live_messages() {
    let app = TestServer::new(server());
    let mut client = app.connect("/feed/b").await.unwrap();
    let (epoch, _, _, _) = notice(&mut client).await;
    for i in 1..=5 {
        publish(&app, "b", &i.to_string());
    }
    for i in 1..=5 {
        assert_eq!(message(&mut client).await, (i, i.to_string()));
    }
    drop(client);
    for i in 6..=8 {
        publish(&app, "b", &i.to_string());
    }
    let query = resume_query(&[("feed:b", &epoch, 5)]);
    let mut client = app.connect(&format!("/feed/b?{query}")).await.unwrap();
    let (same, offset, recovered, _) = notice(&mut client).await;
    assert_eq!(
        (same.as_str(), offset, recovered),
        (epoch.as_str(), 8, Some(true))
    );
    for i in 6..=8 {
        assert_eq!(message(&mut client).await, (i, i.to_string()));
    }
    assert_eq!(recv(&mut client).await, Frame::Plain("recovered 3".into()));
    publish(&app, "b", "9");
    assert_eq!(message(&mut client).await, (9, "9".into()));
}

#[tokio::test]
async fn a_sender_left_out_of_its_message_moves_on_and_does_not_get_it_back() {
    let app = TestServer::new(server());
    let mut sender = app.connect("/room/k").await.unwrap();
    let (epoch, _, _, _) = notice(&mut sender).await;
    let mut other = app.connect("/feed/k").await.unwrap();
    notice(&mut other).await;
    sender.send("hello".to_owned()).await;
    assert_eq!(message(&mut other).await, (1, "hello".into()));
    assert_eq!(recv(&mut sender).await, Frame::Skipped { offset: 1 });
    publish(&app, "k", "news");
    assert_eq!(message(&mut sender).await, (2, "news".into()));
    drop(sender);
    other.send("from a plain client".to_owned()).await; // (a feed ignores what it is sent)
    publish(&app, "k", "later");
    let query = resume_query(&[("feed:k", &epoch, 1)]);
    let mut back = app.connect(&format!("/room/k?{query}")).await.unwrap();
    assert_eq!(notice(&mut back).await.2, Some(true));
    // What it missed: "news" (which it had), then "later"; never its own "hello".
    assert_eq!(message(&mut back).await, (2, "news".into()));
    assert_eq!(message(&mut back).await, (3, "later".into()));
    back.expect_nothing(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn a_client_that_got_nothing_resumes_from_its_notice() {
    let app = TestServer::new(server());
    publish(&app, "c", "before anyone kept history");
    let mut first = app.connect("/feed/c").await.unwrap();
    let (epoch, offset, _, _) = notice(&mut first).await;
    assert_eq!(offset, 0);
    // Someone else keeps the topic going while the first client is away.
    let mut other = app.connect("/feed/c").await.unwrap();
    notice(&mut other).await;
    drop(first);
    publish(&app, "c", "x");
    publish(&app, "c", "y");
    let query = resume_query(&[("feed:c", &epoch, offset)]);
    let mut back = app.connect(&format!("/feed/c?{query}")).await.unwrap();
    assert_eq!(notice(&mut back).await.2, Some(true));
    assert_eq!(message(&mut back).await, (1, "x".into()));
    assert_eq!(message(&mut back).await, (2, "y".into()));
    assert_eq!(recv(&mut back).await, Frame::Plain("recovered 2".into()));
}

#[tokio::test]
async fn gaps_that_cannot_be_filled_are_said_and_nothing_floods() {
    let app = TestServer::new(server().history(History::default().messages(10).max_replay(4)));
    let mut keeper = app.connect("/feed/d").await.unwrap();
    let (epoch, _, _, _) = notice(&mut keeper).await;
    for i in 1..=20 {
        publish(&app, "d", &i.to_string());
    }
    // (position, reason): kept are 11 to 20; a replay carries 4 at most.
    let cases = [
        ((epoch.as_str(), 5), "behind", "Behind"),
        ((epoch.as_str(), 12), "cap", "Cap"),
        ((epoch.as_str(), 21), "ahead", "Ahead"),
        (("0123456789abcdef", 20), "epoch", "Epoch"),
    ];
    for ((at_epoch, at), reason, variant) in cases {
        let query = resume_query(&[("feed:d", at_epoch, at)]);
        let mut client = app.connect(&format!("/feed/d?{query}")).await.unwrap();
        let (now, offset, recovered, why) = notice(&mut client).await;
        assert_eq!((now.as_str(), offset), (epoch.as_str(), 20), "{reason}");
        assert_eq!((recovered, why.as_deref()), (Some(false), Some(reason)));
        // No replay: the endpoint's snapshot comes next, then live messages.
        assert_eq!(
            recv(&mut client).await,
            Frame::Plain(format!("snapshot: {variant}"))
        );
        client.expect_nothing(Duration::from_millis(20)).await;
    }
    // Within the cap and the history: recovered.
    let query = resume_query(&[("feed:d", &epoch, 17)]);
    let mut client = app.connect(&format!("/feed/d?{query}")).await.unwrap();
    assert_eq!(notice(&mut client).await.2, Some(true));
    for i in 18..=20 {
        assert_eq!(message(&mut client).await.0, i);
    }
    // A position in another topic says nothing about this one.
    let query = resume_query(&[("feed:other", &epoch, 3)]);
    let mut client = app.connect(&format!("/feed/d?{query}")).await.unwrap();
    assert_eq!(notice(&mut client).await.2, None);
    client.expect_nothing(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn bad_resume_input_is_refused_before_the_upgrade() {
    let app = TestServer::new(server());
    let too_many: Vec<(String, &str, u64)> = (0..65).map(|i| (format!("t{i}"), "e", 1)).collect();
    let too_many: Vec<(&str, &str, u64)> = too_many
        .iter()
        .map(|(t, e, o)| (t.as_str(), *e, *o))
        .collect();
    let cases = [
        (
            format!("wsock-resume={}", encode("{\"a\":1}")),
            "must be a JSON array",
        ),
        (
            format!("wsock-resume={}", encode("[[\"t\",\"e\",-1]]")),
            "must be a JSON array",
        ),
        (
            format!("wsock-resume={}", encode("[[\"t\",\"e\"]]")),
            "must be a JSON array",
        ),
        (
            format!(
                "wsock-resume={}",
                encode("[[\"t\",\"e\",1],[\"t\",\"e\",2]]")
            ),
            "twice",
        ),
        (resume_query(&too_many), "at most 64"),
        (
            "wsock-resume=%5B&wsock-resume=%5B".to_owned(),
            "given twice",
        ),
        ("wsock-resume=%FF".to_owned(), "must be a JSON array"),
    ];
    for (query, says) in cases {
        let refused = app
            .connect(&format!("/feed/e?{query}"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(refused.status(), 400, "{query}");
        assert!(refused.body().contains(says), "{query}: {}", refused.body());
    }
    // A plain endpoint ignores the parameter.
    let query = resume_query(&[("feed:e", "e", 1)]);
    app.connect(&format!("/plain/e?{query}")).await.unwrap();
    assert_eq!(app.open_connections(), 1);
}

#[tokio::test]
async fn a_history_outlives_its_last_subscriber_until_it_expires() {
    let age = Duration::from_millis(300);
    let app = TestServer::new(server().history(History::default().max_age(age)));
    let mut alone = app.connect("/feed/f").await.unwrap();
    let (epoch, _, _, _) = notice(&mut alone).await;
    drop(alone);
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish(&app, "f", "while away");
    let query = resume_query(&[("feed:f", &epoch, 0)]);
    let mut back = app.connect(&format!("/feed/f?{query}")).await.unwrap();
    assert_eq!(notice(&mut back).await.2, Some(true));
    assert_eq!(message(&mut back).await, (1, "while away".into()));
    drop(back);
    // Past the age, with nobody subscribed: the history is gone, and its epoch with it.
    tokio::time::sleep(age * 2).await;
    let query = resume_query(&[("feed:f", &epoch, 1)]);
    let mut late = app.connect(&format!("/feed/f?{query}")).await.unwrap();
    let (new_epoch, offset, recovered, why) = notice(&mut late).await;
    assert_ne!(new_epoch, epoch);
    assert_eq!(
        (offset, recovered, why.as_deref()),
        (0, Some(false), Some("epoch"))
    );
}

#[tokio::test]
async fn past_the_total_the_unheld_histories_go_first_then_the_growing_one_keeps_less() {
    let app = TestServer::new(server().history(History::default().max_total_bytes(8_000)));
    let mut alone = app.connect("/feed/i").await.unwrap();
    let (unheld, _, _, _) = notice(&mut alone).await;
    drop(alone);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.open_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection did not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reader = app.connect("/feed/j").await.unwrap();
    let (growing, _, _, _) = notice(&mut reader).await;
    for i in 0..40 {
        publish(&app, "j", &format!("{i:0>200}"));
    }
    for i in 1..=40 {
        assert_eq!(message(&mut reader).await.0, i);
    }
    // The unheld topic's history went first.
    let query = resume_query(&[("feed:i", &unheld, 0)]);
    let mut back = app.connect(&format!("/feed/i?{query}")).await.unwrap();
    let (_, _, recovered, why) = notice(&mut back).await;
    assert_eq!((recovered, why.as_deref()), (Some(false), Some("epoch")));
    // The growing one keeps what fits: the newest, not the first.
    let query = resume_query(&[("feed:j", &growing, 38)]);
    let mut recent = app.connect(&format!("/feed/j?{query}")).await.unwrap();
    assert_eq!(notice(&mut recent).await.2, Some(true));
    let query = resume_query(&[("feed:j", &growing, 0)]);
    let mut first = app.connect(&format!("/feed/j?{query}")).await.unwrap();
    let (_, _, recovered, why) = notice(&mut first).await;
    assert_eq!((recovered, why.as_deref()), (Some(false), Some("behind")));
}

/// A broker that relays nothing and hands its sink to the test.
struct Captured(Arc<std::sync::Mutex<Option<wsock::Sink>>>);

impl wsock::Broker for Captured {
    fn start(&self, sink: wsock::Sink) {
        *self.0.lock().unwrap() = Some(sink);
    }
    fn subscribe(&self, _: &str) {}
    fn unsubscribe(&self, _: &str) {}
    fn publish(&self, _: &str, _: wsock::Bytes) -> Result<(), wsock::BrokerError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_broker_that_lost_messages_starts_new_epochs() {
    let sink = Arc::new(std::sync::Mutex::new(None));
    let app = TestServer::new(server().broker(Captured(Arc::clone(&sink))));
    let mut client = app.connect("/feed/g").await.unwrap();
    let (epoch, _, _, _) = notice(&mut client).await;
    publish(&app, "g", "one");
    assert_eq!(message(&mut client).await, (1, "one".into()));
    // The broker's link dropped: what other nodes published meanwhile may be missing here.
    sink.lock().unwrap().as_ref().expect("started").lost();
    publish(&app, "g", "two");
    let Frame::Message {
        epoch: next,
        offset,
        ..
    } = recv(&mut client).await
    else {
        panic!("expected a topic message");
    };
    assert_ne!(next, epoch, "a new epoch tells the live client too");
    assert_eq!(offset, 1);
    drop(client);
    let query = resume_query(&[("feed:g", &epoch, 1)]);
    let mut back = app.connect(&format!("/feed/g?{query}")).await.unwrap();
    let (now, offset, recovered, why) = notice(&mut back).await;
    assert_eq!((now, offset), (next, 1));
    assert_eq!((recovered, why.as_deref()), (Some(false), Some("epoch")));
}

/// Over real sockets: two publishers, on two threads, publish without pause while subscribers
/// are cut, at random moments, a thousand times in all (reset, drop without a close, stall
/// then drop, close), and come back with their positions. Each ends with every message once,
/// in order: offsets without a hole or a repeat, every subscriber the same message at each
/// offset, each publisher's messages in the order it published them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cuts_lose_and_repeat_nothing() {
    const SUBSCRIBERS: usize = 4;
    const CUTS: usize = 1000;
    const MAX_PUBLISHED: u64 = 40_000;
    let app = server().queue_capacity(100_000).history(
        History::default()
            .messages(100_000)
            .max_bytes(64 << 20)
            .max_age(Duration::from_secs(120))
            .max_replay(50_000),
    );
    let topic = app.topics().topic::<String>("feed:cuts");
    let server = common::TestServer::start(app).await;
    let addr = server.addr;
    let publishing = Arc::new(AtomicBool::new(true));
    let published = Arc::new(AtomicU64::new(0));
    // The first subscriber starts the history; the publishers start with it.
    let mut first = server.connect("/feed/cuts").await;
    let Frame::Notice { .. } = parse(&common::next_text(&mut first).await) else {
        panic!("expected the notice");
    };
    let publishers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (publishing, published) = (Arc::clone(&publishing), Arc::clone(&published));
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                let mut n = 0u64;
                // Bounded, so that however slowly the cuts go (a loaded machine), no subscriber
                // falls further behind than one replay carries: its resumes must all recover.
                while publishing.load(Ordering::Relaxed)
                    && published.load(Ordering::Relaxed) < MAX_PUBLISHED
                {
                    tick.tick().await;
                    // A few at a time, so that the seam of a resume meets publishes.
                    for _ in 0..2 {
                        n += 1;
                        topic.publish(format!("{name}:{n}")).unwrap();
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let seen = Seen::default();
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let seen = Arc::clone(&seen);
            tokio::spawn(cut_and_resume(addr, i as u64, CUTS / SUBSCRIBERS, seen))
        })
        .collect();
    let mut resumed = Vec::new();
    for subscriber in subscribers {
        resumed.push(subscriber.await.unwrap());
    }
    publishing.store(false, Ordering::Relaxed);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    // Every message published is numbered: the last offset is their count.
    let last = published.load(Ordering::Relaxed);
    // Back once more: each reads up to the last message published, none missing.
    let mut recovered = 0;
    for mut reader in resumed {
        recovered += reader.recovered;
        let mut ws = reader.connect(addr).await;
        while reader.offset < last {
            reader.read(&common::next_text(&mut ws).await);
        }
        assert_eq!(reader.offset, last);
        assert!(reader.messages > 0);
    }
    drop(first);
    eprintln!(
        "{CUTS} cuts, {last} messages published, {recovered} resumes recovered; every \
         subscriber got every message once, in order"
    );
    server.stop().await;
}

/// The message every subscriber got at each offset, to compare theirs with.
type Seen = Arc<std::sync::Mutex<std::collections::HashMap<u64, String>>>;

/// One subscriber's view: where it is, what it got.
struct Reader {
    epoch: String,
    offset: u64,
    /// Each publisher's last count this subscriber got.
    last: std::collections::HashMap<String, u64>,
    seen: Seen,
    messages: u64,
    recovered: u64,
    resumed: bool,
}

impl Reader {
    /// Connects, with its position once it has one, and reads the notice.
    async fn connect(&mut self, addr: std::net::SocketAddr) -> common::Client {
        let path = if self.resumed {
            let query = resume_query(&[("feed:cuts", &self.epoch, self.offset)]);
            format!("/feed/cuts?{query}")
        } else {
            "/feed/cuts".to_owned()
        };
        let mut ws = connect_to(addr, &path).await;
        match parse(&common::next_text(&mut ws).await) {
            Frame::Notice {
                epoch,
                offset,
                recovered,
                ..
            } => {
                if self.resumed {
                    assert_eq!(recovered, Some(true), "{epoch} {offset}");
                    assert_eq!(epoch, self.epoch);
                    self.recovered += 1;
                } else {
                    (self.epoch, self.offset, self.resumed) = (epoch, offset, true);
                }
            }
            other => panic!("expected the notice, got {other:?}"),
        }
        ws
    }

    /// Takes one frame: a topic message must be the next one.
    fn read(&mut self, text: &str) {
        match parse(text) {
            Frame::Message {
                epoch,
                offset,
                body,
                ..
            } => {
                assert_eq!(epoch, self.epoch);
                assert_eq!(offset, self.offset + 1, "a gap or a repeat");
                let at = self
                    .seen
                    .lock()
                    .unwrap()
                    .entry(offset)
                    .or_insert(body.clone())
                    .clone();
                assert_eq!(body, at, "another message at offset {offset}");
                let (publisher, count) = body.split_once(':').unwrap();
                let count: u64 = count.parse().unwrap();
                if let Some(before) = self.last.insert(publisher.to_owned(), count) {
                    assert_eq!(count, before + 1, "{publisher}'s messages out of order");
                }
                self.offset = offset;
                self.messages += 1;
            }
            Frame::Plain(text) => assert!(text.starts_with("recovered "), "{text}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Connects, cuts and comes back `cuts` times; reads a random number of frames each time.
async fn cut_and_resume(addr: std::net::SocketAddr, seed: u64, cuts: usize, seen: Seen) -> Reader {
    let mut random = seed * 2 + 1;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let mut reader = Reader {
        epoch: String::new(),
        offset: 0,
        last: std::collections::HashMap::new(),
        seen,
        messages: 0,
        recovered: 0,
        resumed: false,
    };
    for _ in 0..cuts {
        let mut ws = reader.connect(addr).await;
        for _ in 0..next() % 12 {
            reader.read(&common::next_text(&mut ws).await);
        }
        match next() % 4 {
            // Reset: no close, no FIN.
            0 => {
                if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                    let _ = tcp.set_zero_linger();
                }
                drop(ws);
            }
            // Gone without a close frame.
            1 => drop(ws),
            // Stalled (the server queues meanwhile), then gone.
            2 => {
                tokio::time::sleep(Duration::from_millis(next() % 20)).await;
                drop(ws);
            }
            // A clean close.
            _ => {
                let _ = ws.send(WsMessage::Close(None)).await;
                let _ = tokio::time::timeout(Duration::from_millis(50), ws.next()).await;
            }
        }
    }
    reader
}

async fn connect_to(addr: std::net::SocketAddr, path: &str) -> common::Client {
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(common::WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("handshake failed");
    ws
}
