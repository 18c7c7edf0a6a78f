//! Presence across nodes sharing a Redis (the `node` example's `/presence/{room}`): every
//! node's watchers see the members of every node and converge to the truth; a user on two
//! nodes is one member; a node killed with `kill -9` has its members gone everywhere within
//! the bound (3 s without its heartbeat, checked every second); no ghosts after a node's
//! restart or Redis's.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// A watcher's view, rebuilt from its frames: key -> connections.
struct View {
    client: Client,
    list: presence::List,
    members: HashMap<String, u64>,
}

impl View {
    async fn open(node: &Node, room: &str) -> View {
        let client = node.connect(&format!("/presence/{room}?watch")).await;
        let mut view = View {
            client,
            list: presence::List::default(),
            members: HashMap::new(),
        };
        view.read(WAIT).await;
        view
    }

    /// Applies the next frame; `false` if none came within `wait`.
    async fn read(&mut self, wait: Duration) -> bool {
        let Ok(text) = tokio::time::timeout(wait, next_text(&mut self.client)).await else {
            return false;
        };
        self.list.apply(&text);
        self.members = self.list.counts();
        true
    }

    /// Reads until the view is `want`, within `within`; how long it took.
    async fn until(&mut self, want: &HashMap<String, u64>, within: Duration) -> Duration {
        let start = tokio::time::Instant::now();
        while self.members != *want {
            let left = within.saturating_sub(start.elapsed());
            assert!(
                self.read(left).await,
                "after {within:?}: {} members seen, {} wanted",
                self.members.len(),
                want.len()
            );
        }
        start.elapsed()
    }
}

fn members(keys: impl IntoIterator<Item = (String, u64)>) -> HashMap<String, u64> {
    keys.into_iter().collect()
}

async fn join(node: &Node, room: &str, name: &str) -> Client {
    node.connect(&format!("/presence/{room}?name={name}")).await
}

#[tokio::test]
async fn presence_spans_nodes_and_every_watcher_converges() {
    let Some(redis) = RedisServer::start("presence").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let mut on_a = View::open(&a, "lobby").await;
    let mut on_b = View::open(&b, "lobby").await;
    let mut clients = Vec::new();
    for i in 0..30 {
        clients.push(join(&a, "lobby", &format!("a{i}")).await);
        clients.push(join(&b, "lobby", &format!("b{i}")).await);
    }
    // One user on both nodes: one member, two connections.
    clients.push(a.connect("/presence/lobby?name=Ann&user=both").await);
    clients.push(b.connect("/presence/lobby?name=Ann&user=both").await);
    let mut want = members((0..30).flat_map(|i| [(format!("a{i}"), 1), (format!("b{i}"), 1)]));
    want.insert("both".to_owned(), 2);
    on_a.until(&want, WAIT).await;
    on_b.until(&want, WAIT).await;

    // Leaves on both nodes, the shared user's too.
    let both_on_b = clients.pop().unwrap();
    drop(both_on_b);
    want.insert("both".to_owned(), 1);
    for i in 0..10 {
        want.remove(&format!("a{i}"));
        want.remove(&format!("b{i}"));
    }
    // (The clients were pushed a, b, a, b, ..: the first 20 are a0..a9 and b0..b9.)
    clients.drain(..20);
    on_a.until(&want, WAIT).await;
    on_b.until(&want, WAIT).await;
    // A watcher that comes now gets the whole list at once.
    let mut late = View::open(&a, "lobby").await;
    late.until(&want, WAIT).await;

    // What is not a node's word (not JSON, no node, members that cannot be, a goodbye from a
    // node that is not one) changes nothing and stops nobody.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let huge = "x".repeat(5_000);
    let junk = [
        "not json".to_owned(),
        r#"{"state":{"ghost":[1,{}]}}"#.to_owned(),
        r#"{"n":"intruder","state":{"ghost":[0,{}],"bad":"x","huge":[1,"HUGE"]}}"#
            .replace("HUGE", &huge),
        r#"{"n":"intruder","set":{"ghost":[-1,{}]},"del":[7,"a10"]}"#.to_owned(),
        r#"{"n":"intruder","bye":true}"#.to_owned(),
    ];
    for payload in junk {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("wsock:\u{1}presence:lobby")
            .arg(payload)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    // (A `del` of a10 by a node that never had it: a10 stays, it is A's.)
    late.read(Duration::from_millis(500)).await;
    assert_eq!(late.members, want);
    assert!(stat(&a.stats().await, "received") > 0);
}

#[tokio::test]
async fn a_killed_node_s_members_are_gone_within_the_bound_and_no_ghosts_remain() {
    let Some(mut redis) = RedisServer::start("presence-kill").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let mut b = Node::start(&redis.url(), false).await;
    let mut on_a = View::open(&a, "hall").await;
    let mut crowd = Vec::new();
    for i in 0..1_000 {
        crowd.push(join(&b, "hall", &format!("m{i}")).await);
    }
    let here = join(&a, "hall", "local").await;
    let mut want = members((0..1_000).map(|i| (format!("m{i}"), 1)));
    want.insert("local".to_owned(), 1);
    on_a.until(&want, WAIT).await;

    // kill -9: no goodbye. Gone on A within the bound: 3 s of silence, checked every second.
    b.child.start_kill().unwrap();
    let _ = b.child.wait().await;
    let only_local = members([("local".to_owned(), 1)]);
    let took = on_a.until(&only_local, Duration::from_secs(6)).await;
    eprintln!("# the killed node's 1,000 members were gone on the other node after {took:?}");
    assert!(took <= Duration::from_secs(5), "{took:?}");
    drop(crowd);

    // The node again (a new process): its new members only, no ghosts.
    let b = Node::start(&redis.url(), false).await;
    let again = join(&b, "hall", "back").await;
    want = members([("local".to_owned(), 1), ("back".to_owned(), 1)]);
    on_a.until(&want, WAIT).await;

    // Redis restarts: the lists come back, and a member that left meanwhile stays gone.
    redis.kill().await;
    drop(again);
    redis.run().await;
    want.remove("back");
    on_a.until(&want, Duration::from_secs(10)).await;
    let mut on_b = View::open(&b, "hall").await;
    on_b.until(&want, Duration::from_secs(10)).await;
    // Nothing else comes: the lists hold.
    assert!(!on_a.read(Duration::from_secs(2)).await || on_a.members == want);
    drop(here);
}

/// A node that stops cleanly (Ctrl-C: its connections closed with 1001) takes its members
/// with it at once, well within the 3 s a crash takes.
#[tokio::test]
async fn a_node_that_stops_cleanly_takes_its_members_at_once() {
    use futures_util::StreamExt;

    let Some(redis) = RedisServer::start("presence-stop").await else {
        return;
    };
    let a = Node::start(&redis.url(), false).await;
    let b = Node::start(&redis.url(), false).await;
    let mut on_a = View::open(&a, "stage").await;
    for i in 0..200 {
        let mut member = join(&b, "stage", &format!("s{i}")).await;
        // Reading, so that it answers the server's close as a browser would.
        tokio::spawn(async move { while member.next().await.is_some() {} });
    }
    let want = members((0..200).map(|i| (format!("s{i}"), 1)));
    on_a.until(&want, WAIT).await;
    b.signal(libc::SIGINT);
    let took = on_a.until(&HashMap::new(), Duration::from_secs(3)).await;
    eprintln!("# a node's 200 members were gone on the other node {took:?} after its Ctrl-C");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}
