//! Topics in one process: subscribe, publish (to all, or all but the sender), from endpoints
//! and from outside them; subscribers leave when their connection ends; a slow subscriber
//! is closed with 1008 and slows nobody; churn loses nothing and leaks nothing.
#![cfg(feature = "test")]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsock::prelude::*;
use wsock::test::{Event, TestClient, TestServer};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Said {
    from: String,
    text: String,
}

/// A room: what a member says reaches the others, not the speaker; `!all` reaches everyone.
#[websocket("/rooms/{room}")]
fn room(room: String, req: Request, out: Out<Json<Said>>, topics: Topics) {
    let name = req.query_param("name").unwrap_or_default();
    let topic = topics.topic::<Json<Said>>(format!("room:{room}"));
    topic.subscribe(&out);
    on_message(|text: String| {
        let said = Json(Said {
            from: name.clone(),
            text: text.clone(),
        });
        if text == "!leave" {
            topic.unsubscribe(&out);
        } else if text.starts_with("!all ") {
            topic.publish(said)?;
        } else {
            topic.publish_except(&out, said)?;
        }
        Ok(())
    });
}

/// Subscribes to `news` and reads nothing.
#[websocket("/news")]
fn news(out: Out<String>, topics: Topics) {
    topics.topic::<String>("news").subscribe(&out);
}

fn server() -> Server {
    Server::new().route(room).route(news)
}

async fn said(client: &mut TestClient) -> Said {
    client.recv::<Json<Said>>().await.0
}

fn from(name: &str, text: &str) -> Said {
    Said {
        from: name.into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn a_room_hears_its_members_but_not_the_speaker_and_other_rooms_hear_nothing() {
    let app = TestServer::new(server());
    let mut ada = app.connect("/rooms/blue?name=ada").await.unwrap();
    let mut bob = app.connect("/rooms/blue?name=bob").await.unwrap();
    let mut eve = app.connect("/rooms/red?name=eve").await.unwrap();
    let topics = app.topics();
    assert_eq!(topics.subscribers("room:blue"), 2);
    assert_eq!(
        topics.counts(),
        [("room:blue".to_owned(), 2), ("room:red".to_owned(), 1)]
    );

    ada.send("hello").await;
    assert_eq!(said(&mut bob).await, from("ada", "hello"));
    ada.expect_nothing(Duration::from_millis(50)).await;
    eve.expect_nothing(Duration::from_millis(50)).await;

    bob.send("!all to everyone").await;
    assert_eq!(said(&mut ada).await, from("bob", "!all to everyone"));
    assert_eq!(said(&mut bob).await, from("bob", "!all to everyone"));

    // Leaving the topic, or the connection, ends the deliveries.
    bob.send("!leave").await;
    ada.send("still there?").await;
    bob.expect_nothing(Duration::from_millis(50)).await;
    assert_eq!(topics.subscribers("room:blue"), 1);
    ada.close(CloseCode::NORMAL).await;
    eve.close(CloseCode::NORMAL).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while !topics.counts().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            topics.counts()
        );
        tokio::task::yield_now().await;
    }
}

/// Publishing from outside any endpoint: a handle taken from the server before it serves,
/// used in a spawned task; and a watch sees what the topic gets.
#[tokio::test]
async fn the_server_publishes_from_anywhere_and_a_watch_sees_it() {
    let server = server();
    let blue = server.topics().topic::<Json<Said>>("room:blue");
    let app = TestServer::new(server);
    let mut ada = app.connect("/rooms/blue?name=ada").await.unwrap();
    let mut watch = app.watch::<Json<Said>>("room:blue");
    tokio::spawn(async move { blue.publish(Json(from("server", "tea is ready"))).unwrap() })
        .await
        .unwrap();
    assert_eq!(said(&mut ada).await, from("server", "tea is ready"));
    assert_eq!(
        watch.recv::<Json<Said>>().await.0,
        from("server", "tea is ready")
    );
    watch.expect_nothing(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn a_topic_carries_one_type_and_a_value_that_does_not_encode_is_an_error() {
    let app = TestServer::new(server());
    let topics = app.topics();
    let _news = topics.topic::<String>("news");
    let mixed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        topics.topic::<Vec<u8>>("news")
    }));
    let panic = mixed.unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains(
            "the topic \"news\" carries `alloc::string::String`, not `alloc::vec::Vec<u8>`"
        ),
        "{message}"
    );
    let odd = topics.topic::<Json<std::collections::HashMap<(u8, u8), u8>>>("odd");
    let error = odd.publish(Json([((1, 2), 3)].into())).unwrap_err();
    assert!(matches!(error, wsock::PublishError::Encode(_)), "{error}");
}

/// The listener's next message, within 5 s.
async fn within(listener: &mut wsock::Listener<Json<Said>>) -> Said {
    let recv = tokio::time::timeout(Duration::from_secs(5), listener.recv());
    recv.await.expect("no message within 5 s").unwrap().0
}

/// Server code listens to a topic: it gets what endpoints and the server publish, typed, in
/// order, once each; it counts as a subscriber until dropped.
#[tokio::test]
async fn a_listener_gets_every_message_typed_until_dropped() {
    let server = server();
    let blue = server.topics().topic::<Json<Said>>("room:blue");
    let mut listener = blue.listen();
    assert_eq!(listener.topic(), "room:blue");
    assert!(listener.try_recv().is_none());
    let app = TestServer::new(server);
    let mut ada = app.connect("/rooms/blue?name=ada").await.unwrap();
    assert_eq!(blue.subscribers(), 2);
    ada.send("hello").await;
    assert_eq!(within(&mut listener).await, from("ada", "hello"));
    blue.publish(Json(from("server", "tea is ready"))).unwrap();
    assert_eq!(within(&mut listener).await, from("server", "tea is ready"));
    assert!(listener.try_recv().is_none());
    // Waiting in a task of its own, as server code does.
    let waiting = tokio::spawn(async move {
        let got = listener.recv().await.unwrap().0;
        (got, listener)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    blue.publish(Json(from("server", "later"))).unwrap();
    let (got, listener) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the listener was not woken")
        .unwrap();
    assert_eq!(got, from("server", "later"));
    drop(listener);
    assert_eq!(blue.subscribers(), 1);
    // The connection got the server's two, as the listener did.
    assert_eq!(said(&mut ada).await, from("server", "tea is ready"));
    assert_eq!(said(&mut ada).await, from("server", "later"));
    ada.expect_nothing(Duration::from_millis(20)).await;
}

/// A listener that falls a full queue behind is dropped from the topic and says `Lagged`
/// from then on; the publisher never waits, and the connections subscribed get everything.
#[tokio::test]
async fn a_listener_that_falls_behind_says_lagged_and_slows_nobody() {
    let app = TestServer::new(server());
    let news = app.topics().topic::<String>("news");
    let mut slow = news.listen_with_capacity(8);
    let mut keeping_up = news.listen();
    let mut watch = app.watch::<String>("news");
    for i in 0..20 {
        news.publish(format!("{i}")).unwrap();
    }
    for i in 0..20 {
        assert_eq!(watch.recv::<String>().await, format!("{i}"));
        assert_eq!(keeping_up.recv().await.unwrap(), format!("{i}"));
    }
    for _ in 0..2 {
        let lagged = tokio::time::timeout(Duration::from_secs(5), slow.recv()).await;
        assert!(
            matches!(lagged, Ok(Err(wsock::ListenError::Lagged))),
            "{lagged:?}"
        );
    }
    assert!(matches!(
        slow.try_recv(),
        Some(Err(wsock::ListenError::Lagged))
    ));
    // Dropped from the topic: the watch and `keeping_up` remain.
    assert_eq!(news.subscribers(), 2);
    news.publish("after".to_owned()).unwrap();
    assert_eq!(keeping_up.recv().await.unwrap(), "after");
}

/// A subscriber that stops reading is closed with 1008 when its queue is full; the others
/// get every message, in order, and the publisher never waits.
#[tokio::test]
async fn a_slow_subscriber_is_closed_with_1008_and_slows_nobody() {
    let app = TestServer::new(server().queue_capacity(16));
    let mut slow = app.connect("/news").await.unwrap();
    let mut watch = app.watch::<String>("news");
    let news = app.topics().topic::<String>("news");
    let started = std::time::Instant::now();
    let page = "x".repeat(8 << 10);
    for i in 0..200 {
        news.publish(format!("{i} {page}")).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "publishing waited"
    );
    for i in 0..200 {
        let got = watch.recv::<String>().await;
        assert!(got.starts_with(&format!("{i} ")), "message {i}");
    }
    // The slow one gets what fit, if anything, then 1008.
    let reason = loop {
        match slow.next().await {
            Some(Event::Text(_)) => continue,
            Some(Event::Close(code, reason)) => {
                assert_eq!(code, 1008);
                break reason;
            }
            other => panic!("expected messages then 1008, got {other:?}"),
        }
    };
    assert_eq!(reason, "outbound queue full");
}

/// 10,000 connections subscribe and leave while messages are published: the subscribers
/// that stay get every message, in order; afterwards nothing is left of the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_ten_thousand_loses_nothing_and_leaks_nothing() {
    const MESSAGES: usize = 2_000;
    let app = std::sync::Arc::new(TestServer::new(server().queue_capacity(MESSAGES + 10)));
    let mut stayers = Vec::new();
    for _ in 0..10 {
        stayers.push(app.connect("/news").await.unwrap());
    }
    let news = app.topics().topic::<String>("news");
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            news.publish(i.to_string()).unwrap();
            tokio::task::yield_now().await;
        }
    });
    let churners: Vec<_> = (0..4)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                for _ in 0..2_500 {
                    let client = app.connect("/news").await.unwrap();
                    drop(client);
                }
            })
        })
        .collect();
    for churner in churners {
        churner.await.unwrap();
    }
    publisher.await.unwrap();
    for stayer in &mut stayers {
        for i in 0..MESSAGES {
            assert_eq!(stayer.recv::<String>().await, i.to_string());
        }
        stayer.expect_nothing(Duration::from_millis(10)).await;
    }
    let topics = app.topics();
    let settled = async {
        while app.open_connections() > 10 || topics.subscribers("news") > 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("the churners' connections did not all end");
    assert_eq!(topics.subscribers("news"), 10);
    drop(stayers);
    let gone = async {
        while app.open_connections() > 0 || !topics.counts().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("connections or topics were left behind");
}

/// A broker with room for `room` messages at a time, given back by hand: what a broker
/// author implements, and what a publisher sees of it.
struct Gate {
    room: std::sync::Arc<tokio::sync::Semaphore>,
    taken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl wsock::Broker for Gate {
    fn start(&self, _: wsock::Sink) {}
    fn subscribe(&self, _: &str) {}
    fn unsubscribe(&self, _: &str) {}

    fn publish(&self, _: &str, _: wsock::Bytes) -> Result<(), wsock::BrokerError> {
        match self.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            Err(_) => Err(wsock::BrokerError::Behind(Error::msg("the gate is full"))),
        }
    }

    fn publish_wait<'a>(&'a self, _: &'a str, _: wsock::Bytes) -> wsock::BrokerFuture<'a> {
        Box::pin(async move {
            self.room.acquire().await.unwrap().forget();
            self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
    }
}

/// While the broker is behind, `publish` is refused with `PublishError::Behind` (this node's
/// subscribers still get the message) and `publish_wait` waits for room, then delivers.
#[tokio::test]
async fn a_broker_behind_refuses_publish_and_holds_publish_wait() {
    let room = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    let taken = std::sync::Arc::default();
    let gate = Gate {
        room: std::sync::Arc::clone(&room),
        taken: std::sync::Arc::clone(&taken),
    };
    let app = TestServer::new(server().broker(gate));
    let mut watch = app.watch::<String>("news");
    let news = app.topics().topic::<String>("news");
    news.publish("one").unwrap();
    news.publish("two").unwrap();
    let error = news.publish("three").unwrap_err();
    assert!(matches!(error, wsock::PublishError::Behind(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "the message reached this node only: the gate is full"
    );
    for expected in ["one", "two", "three"] {
        assert_eq!(watch.recv::<String>().await, expected);
    }

    // Waits for room, and delivers here only once it had it.
    let waiting = tokio::spawn({
        let news = news.clone();
        async move { news.publish_wait("four").await }
    });
    watch.expect_nothing(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    room.add_permits(1);
    waiting.await.unwrap().unwrap();
    assert_eq!(watch.recv::<String>().await, "four");
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 3);
}
