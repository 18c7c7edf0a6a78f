//! What an operator reads at the default level: one line per refusal and per abnormal close,
//! with the reason in words, and no more than a line a second of each however many come.
//!
//! One test in its own binary: the rate limits are per process, and another test refusing
//! requests at the same time would take this one's lines.
#![cfg(feature = "test")]

mod common;

use std::time::Duration;

use common::Logs;
use wsock::prelude::*;
use wsock::test::TestServer;

#[websocket("/small", max_message_size = "1KiB")]
fn small(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

struct Missing;

#[websocket("/stateful")]
fn stateful(_missing: State<Missing>) {}

#[tokio::test]
async fn refusals_and_abnormal_closes_are_logged_in_words_and_a_flood_is_not() {
    let (logs, _guard) = Logs::capture();
    let app = TestServer::new(Server::new().route(small).route(stateful));

    // A flood of refused upgrades: the first is logged with its reason, the others counted,
    // a line a second at most.
    let flood = 5_000;
    let started = std::time::Instant::now();
    for _ in 0..flood {
        let refused = app
            .request("/small")
            .origin("https://evil.example")
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 403);
    }
    let seconds = started.elapsed().as_secs() as usize;
    let refusals = logs.matching("refused");
    assert!(
        !refusals.is_empty() && refusals.len() <= seconds + 1,
        "{} lines in {seconds} s: {refusals:#?}",
        refusals.len()
    );
    assert!(refusals[0].contains(" INFO "), "{}", refusals[0]);
    assert!(
        refusals[0].contains(
            "refused 403 Forbidden: origin https://evil.example is not allowed to open \
             websockets here"
        ),
        "{}",
        refusals[0]
    );
    // All of it is a few hundred bytes a second, not megabytes.
    let bytes: usize = logs.lines().iter().map(|line| line.len() + 1).sum();
    assert!(
        bytes < 400 * refusals.len(),
        "{bytes} bytes of logs for {flood} refusals"
    );

    // A second later, the next one is logged with the count of those not logged: every
    // refusal is accounted for.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let refused = app.connect("/nowhere").await.unwrap_err();
    assert_eq!(refused.status(), 404);
    let refusals = logs.matching("refused");
    let last = refusals.last().unwrap();
    assert!(
        last.contains("refused 404 Not Found: no websocket endpoint at this path ("),
        "{last}"
    );
    assert_eq!(accounted(&refusals), flood + 1, "{refusals:#?}");

    // A missing `State<T>`: the type is named in the 500 and in the log.
    let refused = app.connect("/stateful").await.unwrap_err();
    assert_eq!(refused.status(), 500);
    assert!(
        refused.body().contains("`logs::Missing`"),
        "{}",
        refused.body()
    );
    let missing = logs.matching("Server::state(value)");
    assert_eq!(missing.len(), 1, "{:#?}", logs.lines());
    assert!(
        missing[0].contains("an endpoint takes `State<logs::Missing>`"),
        "{}",
        missing[0]
    );

    // A message over the limit: the close reason says the limit, and a line says so.
    let mut client = app.connect("/small").await.unwrap();
    client.send("x".repeat(1025)).await;
    let reason = client.expect_close(CloseCode::TOO_BIG).await;
    assert_eq!(reason, "message over the size limit of 1 KiB");
    let closes = wait_for_lines(&logs, "closed with 1009", 1).await;
    assert!(
        closes[0]
            .contains("closed with 1009 (message too big): message over the size limit of 1 KiB"),
        "{}",
        closes[0]
    );
    assert!(closes[0].contains("endpoint=\"small\""), "{}", closes[0]);

    // A flood of abnormal closes: a line a second at most, every close accounted for.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let mut client = app.connect("/small").await.unwrap();
        client.send("x".repeat(2000)).await;
        client.expect_close(CloseCode::TOO_BIG).await;
    }
    let seconds = started.elapsed().as_secs() as usize;
    let closes = wait_for_lines(&logs, "closed with 1009", 2).await;
    assert!(closes.len() <= 1 + seconds + 1, "{closes:#?}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut client = app.connect("/small").await.unwrap();
    client.send("x".repeat(2000)).await;
    client.expect_close(CloseCode::TOO_BIG).await;
    let closes = wait_for_lines(&logs, "closed with 1009", closes.len() + 1).await;
    assert!(
        closes
            .last()
            .unwrap()
            .contains("more abnormal closes since the last such line)"),
        "{closes:#?}"
    );
    assert_eq!(accounted(&closes), 1 + 200 + 1, "{closes:#?}");

    // A normal close is no news.
    let mut client = app.connect("/small").await.unwrap();
    client.close(CloseCode::NORMAL).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(logs.matching("closed with 1000").is_empty());
}

/// The events the lines stand for: each line, plus the others it says were not logged.
fn accounted(lines: &[String]) -> usize {
    lines
        .iter()
        .map(|line| {
            let more = line
                .split_once(" more ")
                .and_then(|(before, _)| before.rsplit_once('(')?.1.parse().ok());
            1 + more.unwrap_or(0)
        })
        .sum()
}

/// Waits (up to 5 s) until `count` lines contain `text`; returns them.
async fn wait_for_lines(logs: &Logs, text: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines = logs.matching(text);
        if lines.len() >= count {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} lines with {text:?}; the log: {:#?}",
            logs.lines()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
