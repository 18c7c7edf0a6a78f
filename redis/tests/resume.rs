//! Resume across nodes sharing a Redis (the `node` example's `/resume/{topic}`): Redis keeps
//! each topic's history (a stream) and numbers its messages, so a client resumes on any node:
//! what it missed, then live, with no gap and no duplicate. A node whose link to Redis drops
//! asks Redis for what it missed meanwhile, so its subscribers lose nothing; Redis restarting
//! without its data is told to clients (`recovered: false`, reason `epoch`), and afterwards
//! resuming works again.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A resume frame's header and what follows it.
fn header(text: &str) -> (Value, &str) {
    let rest = text
        .strip_prefix('\u{1e}')
        .unwrap_or_else(|| panic!("not a resume frame: {text}"));
    let (header, body) = rest.split_once('\u{1e}').unwrap();
    (serde_json::from_str(header).unwrap(), body)
}

/// The notice: epoch, offset, and `recovered` if a position was given.
async fn notice(client: &mut Client) -> (String, u64, Option<bool>) {
    let text = next_text(client).await;
    let (header, _) = header(&text);
    assert!(header["subscribed"].is_string(), "{text}");
    (
        header["epoch"].as_str().unwrap().to_owned(),
        header["offset"].as_u64().unwrap(),
        header["recovered"].as_bool(),
    )
}

/// A topic message's epoch, offset and body.
async fn message(client: &mut Client) -> (String, u64, String) {
    let text = next_text(client).await;
    let (header, body) = header(&text);
    assert!(header["topic"].is_string(), "{text}");
    (
        header["epoch"].as_str().unwrap().to_owned(),
        header["offset"].as_u64().unwrap(),
        body.to_owned(),
    )
}

fn resume_path(topic: &str, epoch: &str, offset: u64) -> String {
    format!(
        "/resume/{topic}?{}",
        resume::resume_query(&[(topic, epoch, offset)])
    )
}

/// Resumes on `node` from `(epoch, offset)` and expects `names`, in order, at the offsets
/// after `offset`: replayed, or live for those the node has not had from Redis yet (its notice
/// tells where its own copy stands, which may be behind the newest that another node saw).
async fn resume_on(node: &Node, topic: &str, epoch: &str, offset: u64, names: &[String]) {
    let mut client = node.connect(&resume_path(topic, epoch, offset)).await;
    let last = offset + names.len() as u64;
    let (at, told, recovered) = notice(&mut client).await;
    assert_eq!((at.as_str(), recovered), (epoch, Some(true)));
    assert!(
        (offset..=last).contains(&told),
        "told {told}, resumed from {offset}, {last} published"
    );
    for (i, name) in names.iter().enumerate() {
        let (at, offset_seen, body) = message(&mut client).await;
        assert_eq!(
            (at.as_str(), offset_seen, body.as_str()),
            (epoch, offset + 1 + i as u64, name.as_str())
        );
    }
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}:{i}")).collect()
}

#[tokio::test]
async fn a_client_resumes_on_any_node_and_a_redis_restart_is_told() {
    let Some(mut redis) = RedisServer::start("resume").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    // A plain subscriber on a third node: what it got is in Redis's history.
    let c = Node::start(&redis.url(), false).await;
    let mut watch = c.connect("/sub/news").await;
    let mut on_a = a.connect("/resume/news").await;
    let (epoch, start, recovered) = notice(&mut on_a).await;
    assert_eq!((start, recovered), (0, None));
    redis.await_subscribers("wsock:news", 2).await;

    // Published on B, numbered by Redis: the same offsets on every node.
    let mut publisher = b.connect("/pub/news").await;
    publish_all(&mut publisher, "m", 0..10).await;
    for (i, name) in names("m", 0..10).iter().enumerate() {
        assert_eq!(
            message(&mut on_a).await,
            (epoch.clone(), i as u64 + 1, name.clone())
        );
    }
    drop(on_a);
    publish_all(&mut publisher, "away", 0..5).await;
    check_sequences(&mut watch, 15).await;

    // Resumed on the other node: the five it missed, then live.
    let mut on_b = b.connect(&resume_path("news", &epoch, 10)).await;
    assert_eq!(notice(&mut on_b).await, (epoch.clone(), 15, Some(true)));
    for (i, name) in names("away", 0..5).iter().enumerate() {
        assert_eq!(
            message(&mut on_b).await,
            (epoch.clone(), 11 + i as u64, name.clone())
        );
    }
    publish_all(&mut publisher, "live", 0..2).await;
    check_sequences(&mut watch, 2).await;
    for (i, name) in names("live", 0..2).iter().enumerate() {
        assert_eq!(
            message(&mut on_b).await,
            (epoch.clone(), 16 + i as u64, name.clone())
        );
    }
    drop(on_b);
    // And on the first node, from further back, with nobody there holding the topic.
    let mut missed = names("away", 2..5);
    missed.extend(names("live", 0..2));
    resume_on(&a, "news", &epoch, 12, &missed).await;

    // A client that got nothing but its position, and dropped: nothing missed either.
    let mut quiet = a.connect("/resume/news").await;
    assert_eq!(notice(&mut quiet).await, (epoch.clone(), 17, None));
    drop(quiet);
    publish_all(&mut publisher, "after", 0..3).await;
    check_sequences(&mut watch, 3).await;
    resume_on(&b, "news", &epoch, 17, &names("after", 0..3)).await;
    // A node started since (a restart, a deploy) has it all from Redis.
    let d = Node::start(&redis.url(), false).await;
    let mut missed = names("live", 1..2);
    missed.extend(names("after", 0..3));
    resume_on(&d, "news", &epoch, 16, &missed).await;
    drop(d);

    // Further behind than the history (256 messages by default): told, not flooded.
    publish_all(&mut publisher, "bulk", 0..300).await;
    check_sequences(&mut watch, 300).await;
    let mut far = b.connect(&resume_path("news", &epoch, 20)).await;
    let (_, last, recovered) = notice(&mut far).await;
    // (B may not have had the last of them from Redis yet.)
    assert!(last > 20 + 256, "{last}");
    assert_eq!(recovered, Some(false));
    assert_eq!(next_text(&mut far).await, "not recovered: Behind");
    // A forged epoch, and a position past the end: told, never another history's data.
    let mut forged = a.connect(&resume_path("news", "0123456789abcdef", 3)).await;
    assert_eq!(notice(&mut forged).await.2, Some(false));
    assert_eq!(next_text(&mut forged).await, "not recovered: Epoch");
    let mut ahead = a.connect(&resume_path("news", &epoch, 9_999)).await;
    assert_eq!(notice(&mut ahead).await.2, Some(false));
    assert_eq!(next_text(&mut ahead).await, "not recovered: Ahead");
    drop((far, forged, ahead));

    // Redis restarts without its data: the history is gone, and clients are told so.
    let mut live = a.connect("/resume/news").await;
    assert_eq!(notice(&mut live).await.1, 320);
    redis.kill().await;
    redis.run().await;
    let (after, offset, recovered) = notice(&mut live).await;
    assert_ne!(after, epoch);
    assert_eq!((offset, recovered), (0, Some(false)));
    let mut gone = b.connect(&resume_path("news", &epoch, 320)).await;
    assert_eq!(notice(&mut gone).await.2, Some(false));
    assert_eq!(next_text(&mut gone).await, "not recovered: Epoch");
    drop(gone);

    // Afterwards resuming works again, from the new position, on either node. (Until B has
    // seen Redis go and come back, what it publishes may be lost: at most once across an
    // outage. Probes until one comes through.)
    let mut publisher = b.connect("/pub/news").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    for probe in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe came through"
        );
        publisher
            .send(Message::text(format!("probe:{probe}")))
            .await
            .unwrap();
        let came = tokio::time::timeout(Duration::from_millis(300), live.next()).await;
        if let Ok(Some(Ok(Message::Text(text)))) = came {
            let (header, body) = header(&text);
            assert_eq!(header["epoch"], after.as_str());
            assert!(body.starts_with("probe:"), "{text}");
            break;
        }
    }
    drop(live);
    let mut here = a.connect("/resume/news").await;
    let (_, now, _) = notice(&mut here).await;
    publish_all(&mut publisher, "later", 0..3).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = next_text(&mut watch).await;
        if text == "later:2" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    resume_on(&a, "news", &after, now, &names("later", 0..3)).await;
    resume_on(&b, "news", &after, now + 1, &names("later", 1..3)).await;
}

/// A node's link to Redis drops while a publisher on the other node goes on: once it is back,
/// the node asks Redis for what it missed, so its subscribers, resumable or not, lose nothing.
#[tokio::test]
async fn a_node_whose_link_dropped_misses_nothing() {
    let Some(redis) = RedisServer::start("resume-link").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let mut plain = a.connect("/sub/feed").await;
    let mut resumable = a.connect("/resume/feed").await;
    let (epoch, _, _) = notice(&mut resumable).await;
    redis.await_subscribers("wsock:feed", 1).await;
    let mut publisher = b.connect("/pub/feed").await;
    // 1,000 a second for 3 s: a link that is back within a fraction of a second finds what
    // it missed in the history (256 messages).
    let total = 3_000;
    let publishing = tokio::spawn(async move {
        for chunk in 0..(total / 10) {
            publish_all(&mut publisher, "p", chunk * 10..(chunk + 1) * 10).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        publisher
    });
    // Cut every subscriber link, twice, while the publisher goes on.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        // (Both nodes' subscriber connections, unless one is still coming back.)
        assert!(redis.kill_pubsub_clients().await >= 1);
    }
    let _publisher = publishing.await.unwrap();
    check_sequences(&mut plain, total).await;
    for i in 0..total {
        let (at, offset, body) = message(&mut resumable).await;
        assert_eq!(
            (at.as_str(), offset, body),
            (epoch.as_str(), i as u64 + 1, format!("p:{i}"))
        );
    }
    assert!(stat(&a.stats().await, "disconnections") >= 1);
}

/// A message that reaches a kept topic without a number (published by a node that had not
/// heard yet that the topic is kept) is not in the history: the topic starts again under a
/// new epoch, so a client that was away is told, never given a silent gap.
#[tokio::test]
async fn a_message_outside_the_history_starts_a_new_epoch() {
    let Some(redis) = RedisServer::start("resume-outside").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let mut live = a.connect("/resume/t").await;
    let (epoch, _, _) = notice(&mut live).await;
    let mut away = a.connect("/resume/t").await;
    assert_eq!(notice(&mut away).await.0, epoch);
    drop(away);
    // As another node would publish it, without the script: magic, text, node, no token.
    let mut payload = b"wsck2\x01".to_vec();
    payload.extend([9u8; 16]);
    payload.extend([0u8; 8]);
    payload.extend(b"outside");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("wsock:t")
        .arg(payload)
        .query_async(&mut connection)
        .await
        .unwrap();
    // The connected client gets it (as it is), then the topic's new position.
    assert_eq!(next_text(&mut live).await, "outside");
    let (renewed, offset, recovered) = notice(&mut live).await;
    assert_ne!(renewed, epoch);
    assert_eq!((offset, recovered), (0, None));
    // The one that was away is told.
    let mut back = a.connect(&resume_path("t", &epoch, 0)).await;
    assert_eq!(notice(&mut back).await.2, Some(false));
    assert_eq!(next_text(&mut back).await, "not recovered: Epoch");
}

/// A client that got messages from a node ahead of the one it resumes on (that one's link to
/// Redis is slower) is not told it is ahead of the topic, nor given what it has again: the
/// node answers once it caught up.
#[tokio::test]
async fn resuming_on_a_node_that_lags_behind_the_client() {
    let Some(redis) = RedisServer::start("resume-lag").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let c = Node::start(&redis.url(), false).await;
    // B follows the topic (a resumable subscriber of its own).
    let mut on_b = b.connect("/resume/lag").await;
    let (epoch, _, _) = notice(&mut on_b).await;
    let mut on_a = a.connect("/resume/lag").await;
    assert_eq!(notice(&mut on_a).await.0, epoch);
    redis.await_subscribers("wsock:lag", 2).await;
    let mut publisher = c.connect("/pub/lag").await;
    // B stops (its backlog waits in its socket and in Redis) while the client on A gets 5,000.
    b.signal(libc::SIGSTOP);
    publish_all(&mut publisher, "p", 0..5_000).await;
    for i in 0..5_000 {
        assert_eq!(message(&mut on_a).await.1, i + 1);
    }
    drop(on_a);
    b.signal(libc::SIGCONT);
    // Back on B at once, at 5,000 (B has a backlog to go through): recovered, nothing replayed,
    // then the next one only.
    let mut back = b.connect(&resume_path("lag", &epoch, 5_000)).await;
    assert_eq!(notice(&mut back).await, (epoch.clone(), 5_000, Some(true)));
    publish_all(&mut publisher, "q", 0..1).await;
    assert_eq!(message(&mut back).await, (epoch, 5_001, "q:0".to_owned()));
    drop(on_b);
}

/// A numbered message that a node never got live (Redis kept it, but its pub/sub copy did
/// not reach the node): the next one skips an offset, and the node asks Redis for what it
/// missed, as after a lost link. Its subscribers get every message once, in order, and nobody
/// is told `behind`; that is told only when Redis no longer holds what is missing.
#[tokio::test]
async fn a_gap_in_the_live_numbering_is_filled_from_redis() {
    let Some(redis) = RedisServer::start("resume-gap").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let mut resumable = b.connect("/resume/gap").await;
    let (epoch, start, _) = notice(&mut resumable).await;
    assert_eq!(start, 0);
    let mut plain = b.connect("/sub/gap").await;
    redis.await_subscribers("wsock:gap", 1).await;
    let mut publisher = a.connect("/pub/gap").await;
    publish_all(&mut publisher, "m", 0..1).await;
    assert_eq!(
        message(&mut resumable).await,
        (epoch.clone(), 1, "m:0".to_owned())
    );
    assert_eq!(next_text(&mut plain).await, "m:0");

    // `m:1` goes into the topic's history in Redis as the publishing script would put it
    // (numbered 2), with no PUBLISH: no node hears of it.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let kept: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg("wsock:s:gap")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let [(id, fields)] = &kept[..] else {
        panic!("one message kept: {kept:?}");
    };
    assert_eq!(id, "1-1");
    // Fields `t` (when) and `m` (node A's payload: its header, then `m:0`).
    let payload = &fields[3];
    let mut missed = payload[..payload.len() - b"m:0".len()].to_vec();
    missed.extend(b"m:1");
    let hidden = |offset: u64, payload: Vec<u8>| {
        let mut connection = connection.clone();
        let when = fields[1].clone();
        async move {
            let at: u64 = redis::cmd("HINCRBY")
                .arg("wsock:h:gap")
                .arg("offset")
                .arg(1)
                .query_async(&mut connection)
                .await
                .unwrap();
            assert_eq!(at, offset);
            if !payload.is_empty() {
                let _: String = redis::cmd("XADD")
                    .arg("wsock:s:gap")
                    .arg(format!("{offset}-1"))
                    .arg("t")
                    .arg(when)
                    .arg("m")
                    .arg(payload)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
            }
        }
    };
    hidden(2, missed).await;
    // The next ones are published as usual: 3 and 4. B sees 3 after 1, and asks Redis.
    publish_all(&mut publisher, "m", 2..4).await;
    for (offset, name) in (2..).zip(names("m", 1..4)) {
        assert_eq!(message(&mut resumable).await, (epoch.clone(), offset, name));
    }
    for name in names("m", 1..4) {
        assert_eq!(next_text(&mut plain).await, name);
    }

    // A gap Redis does not hold (its offset counted, its message gone): told, at the offset
    // before the message that showed it, which follows with the next ones.
    hidden(5, Vec::new()).await;
    publish_all(&mut publisher, "n", 0..1).await;
    let text = next_text(&mut resumable).await;
    let (header, _) = header(&text);
    assert_eq!(header["subscribed"], "gap", "{text}");
    assert_eq!(header["epoch"], epoch.as_str(), "{text}");
    assert_eq!(header["offset"], 5, "{text}");
    assert_eq!(header["recovered"], false, "{text}");
    assert_eq!(header["reason"], "behind", "{text}");
    publish_all(&mut publisher, "n", 1..2).await;
    for (offset, name) in (6..).zip(names("n", 0..2)) {
        assert_eq!(message(&mut resumable).await, (epoch.clone(), offset, name));
    }
    for name in names("n", 0..2) {
        assert_eq!(next_text(&mut plain).await, name);
    }
}
