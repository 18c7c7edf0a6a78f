//! The connections' timers are one sweep per server: a silent peer is still pinged, closed
//! and dropped on time (never early, at most a tick late), and the sweep ends with the
//! server's last connection, leaving no task behind.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use wsock::prelude::*;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

const PING: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_millis(500);
const CLOSE: Duration = Duration::from_millis(300);
/// The sweep's tick for these settings: a tenth of the shortest.
const TICK: Duration = Duration::from_millis(20);
/// What a loaded machine may add to a timer's tick.
const SLACK: Duration = Duration::from_millis(150);

/// Asserts `what` happened `elapsed` after the start, no earlier than `due` and at most a
/// tick (and the slack) later.
fn on_time(what: &str, elapsed: Duration, due: Duration) {
    assert!(elapsed >= due, "{what} after {elapsed:?}, before {due:?}");
    assert!(
        elapsed <= due + TICK + SLACK,
        "{what} after {elapsed:?}, due at {due:?}"
    );
}

/// Each of a silent peer's timers is the sweep's: the ping (after `PING` of silence), the
/// close (after `IDLE`), and the drop of a peer that never answers the close (`CLOSE` later).
#[tokio::test]
async fn a_silent_peer_is_pinged_closed_and_dropped_on_time() {
    let server = TestServer::start(
        Server::new()
            .route(echo)
            .ping_interval(PING)
            .idle_timeout(IDLE)
            .close_timeout(CLOSE),
    )
    .await;
    // The server's clock starts after the upgrade, so never before this one.
    let start = Instant::now();
    let mut silent = raw_upgrade(server.addr, "/echo").await;

    // Pinged each `PING` of silence, then closed once silent for `IDLE`.
    let mut pings = 0;
    let closed = loop {
        let (first, payload) = raw_read_frame(&mut silent).await;
        let elapsed = start.elapsed();
        if first & 0x0f == 0x9 {
            pings += 1;
            on_time("a ping", elapsed, PING * pings);
            continue;
        }
        assert_eq!(first & 0x0f, 0x8, "a ping or the close");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
        on_time("the close", elapsed, IDLE);
        break elapsed;
    };
    assert_eq!(pings, 2);

    // The peer never answers the close: the server drops the connection at its deadline.
    let mut rest = [0u8; 16];
    let read = tokio::time::timeout(WAIT, silent.read(&mut rest))
        .await
        .expect("the server drops the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let dropped = start.elapsed();
    assert!(dropped >= IDLE + CLOSE, "dropped after {dropped:?}");
    on_time("the drop", dropped - closed, CLOSE);
    server.stop().await;
}

/// The tasks alive on this runtime, once their count settles (tasks end at their next turn,
/// the sweep at its next tick): the same for a quarter of a second, many ticks.
async fn settled_tasks() -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = Instant::now() + WAIT;
    let mut count = metrics.num_alive_tasks();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(250) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let alive = metrics.num_alive_tasks();
        if alive != count {
            (count, since) = (alive, Instant::now());
        }
    }
    count
}

/// The sweep starts with a server's first connection, ends once none is open, starts again
/// with the next, and no sweep is left once the server stopped.
#[tokio::test]
async fn no_sweep_outlives_the_connections_or_the_server() {
    let before = settled_tasks().await;
    // The clients left open at the shutdown do not answer its close: the close timeout ends
    // them.
    let server = TestServer::start(Server::new().route(echo).close_timeout(CLOSE)).await;
    // The server's own tasks (its accept loop).
    let serving = settled_tasks().await;

    for round in 0..2 {
        let mut client = server.connect("/echo").await;
        send(&mut client, "hi").await;
        assert_eq!(next_text(&mut client).await, "hi");
        // The connection's tasks and the sweep's.
        assert!(settled_tasks().await > serving, "round {round}");
        drop(client);
        // The connection ends, and the sweep with it at its next tick.
        assert_eq!(settled_tasks().await, serving, "round {round}");
    }

    // Connections open at the shutdown: none of their tasks, nor the sweep, is left.
    let clients = [server.connect("/echo").await, server.connect("/echo").await];
    assert!(settled_tasks().await > serving);
    server.stop().await;
    drop(clients);
    assert_eq!(settled_tasks().await, before);
}
