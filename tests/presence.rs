//! Presence on one node: members tracked with metadata, one member per key across its
//! connections, leaving when they untrack or end; watchers get the list, then batched net
//! changes that rebuild the same list; counts only for big rooms; bad input refused clearly.
#![cfg(feature = "test")]

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsock::prelude::*;
use wsock::test::{TestClient, TestServer};

#[path = "common/presence.rs"]
mod presence_list;
use presence_list::List;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Member {
    name: String,
    status: String,
}

/// A room: `?name=` tracks the connection (under `?user=`, or the name), `?watch` watches,
/// `?counts` makes the room counts only. Messages: `away` updates, `leave` untracks, `again`
/// tracks once more, `big` tracks with metadata too long, `nokey` with an empty key,
/// `unwatch`.
#[websocket("/rooms/{room}")]
fn room(room: String, req: Request, out: Out<String>, topics: Topics) {
    let here = topics.presence::<Member>(room);
    let name = req.query_param("name").unwrap_or_default();
    let user = req.query_param("user").unwrap_or_else(|| name.clone());
    if req.query_param("counts").is_some() {
        here.counts_only();
    }
    if req.query_param("watch").is_some() {
        here.watch(&out);
    }
    let me = |status: &str| Member {
        name: name.clone(),
        status: status.to_owned(),
    };
    if !name.is_empty() {
        here.track(&out, user.clone(), &me("here")).unwrap();
    }
    on_message(|text: String| {
        let done = match text.as_str() {
            "away" => here.update(&out, &me("away")),
            "leave" => {
                here.untrack(&out);
                Ok(())
            }
            "again" => here.track(&out, user.clone(), &me("here")),
            "big" => here.track(&out, user.clone(), &me(&"x".repeat(5000))),
            "nokey" => here.track(&out, "", &me("here")),
            "unwatch" => {
                here.unwatch(&out);
                Ok(())
            }
            _ => Ok(()),
        };
        match done {
            Ok(()) => out.write("ok".to_owned()),
            Err(error) => out.write(format!("error: {error}")),
        }
    });
}

fn server() -> Server {
    Server::new().route(room).max_connections(12_000)
}

/// A watcher's view of a room, rebuilt from the frames it gets.
struct View {
    client: TestClient,
    name: String,
    list: List,
    frames: usize,
}

impl View {
    async fn open(app: &TestServer, path: &str, name: &str) -> View {
        let client = app.connect(path).await.unwrap();
        let mut view = View {
            client,
            name: name.to_owned(),
            list: List::default(),
            frames: 0,
        };
        view.read().await; // the list, or the count
        view
    }

    /// Reads one frame and applies it.
    async fn read(&mut self) {
        let text: String = self.client.recv().await;
        let name = self.list.apply(&text);
        assert_eq!(name, self.name, "{text}");
        self.frames += 1;
    }

    /// Reads frames until the view is `members` (names, and their connection counts).
    async fn until(&mut self, members: &[(&str, u64)]) {
        let want: HashMap<String, u64> =
            members.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        loop {
            if self.list.counts() == want {
                return;
            }
            self.read().await;
        }
    }
}

/// The truth, as the server's handle says it.
fn truth(app: &TestServer, room: &str) -> HashMap<String, u64> {
    app.topics()
        .presence::<Member>(room)
        .list()
        .into_iter()
        .map(|present| (present.key, present.connections as u64))
        .collect()
}

#[tokio::test]
async fn watchers_see_joins_updates_and_leaves_and_rebuild_the_same_list() {
    let app = TestServer::new(server());
    let mut watcher = View::open(&app, "/rooms/blue?watch", "blue").await;
    assert!(watcher.list.members.is_empty());
    let mut ada = app.connect("/rooms/blue?name=ada").await.unwrap();
    let bob = app.connect("/rooms/blue?name=bob").await.unwrap();
    // Both within an interval or two: a frame or two after the list.
    watcher.until(&[("ada", 1), ("bob", 1)]).await;
    assert!(watcher.frames <= 3, "{} frames", watcher.frames);
    assert_eq!(watcher.list.members["ada"].0["status"], "here");

    // An update is a join that replaces the member.
    ada.send("away").await;
    assert_eq!(ada.recv::<String>().await, "ok");
    watcher.read().await;
    assert_eq!(watcher.list.members["ada"].0["status"], "away");

    // Leaving: untracked, or the connection ends.
    drop(bob);
    watcher.until(&[("ada", 1)]).await;
    ada.send("leave").await;
    assert_eq!(ada.recv::<String>().await, "ok");
    watcher.until(&[]).await;
    assert!(truth(&app, "blue").is_empty());
    assert_eq!(app.topics().presence::<Member>("blue").count(), 0);

    // A watcher that comes later gets the list as it is.
    let _cy = app.connect("/rooms/blue?name=cy").await.unwrap();
    let mut late = View::open(&app, "/rooms/blue?watch", "blue").await;
    if late.list.members.is_empty() {
        late.read().await;
    }
    assert_eq!(late.list.members.keys().collect::<Vec<_>>(), ["cy"]);
    watcher.until(&[("cy", 1)]).await;
}

#[tokio::test]
async fn one_user_on_several_tabs_is_one_member() {
    let app = TestServer::new(server());
    let mut watcher = View::open(&app, "/rooms/doc?watch", "doc").await;
    let tab1 = app.connect("/rooms/doc?name=Ada&user=u1").await.unwrap();
    let tab2 = app.connect("/rooms/doc?name=Ada&user=u1").await.unwrap();
    watcher.until(&[("u1", 2)]).await;
    assert_eq!(truth(&app, "doc"), HashMap::from([("u1".to_owned(), 2)]));
    drop(tab1);
    watcher.until(&[("u1", 1)]).await;
    drop(tab2);
    watcher.until(&[]).await;
}

/// 10,000 members come, and a quarter of them leave again, while three members watch: each
/// watcher gets a handful of frames (one an interval, at most 1,000 members each), and its
/// list is the truth.
#[tokio::test]
async fn a_crowd_costs_each_watcher_a_handful_of_frames() {
    let app = TestServer::new(server());
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(View::open(&app, "/rooms/hall?watch", "hall").await);
    }
    let mut members = Vec::new();
    let start = std::time::Instant::now();
    for i in 0..10_000 {
        members.push(
            app.connect(&format!("/rooms/hall?name=m{i}"))
                .await
                .unwrap(),
        );
    }
    // Every fourth leaves again.
    for (i, member) in members.iter_mut().enumerate() {
        if i % 4 == 0 {
            member.send("leave").await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let truth = truth(&app, "hall");
    assert_eq!(truth.len(), 7_500);
    let want: Vec<(String, u64)> = truth.into_iter().collect();
    let want: Vec<(&str, u64)> = want.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    for watcher in &mut watchers {
        tokio::time::timeout(Duration::from_secs(10), watcher.until(&want))
            .await
            .expect("the watcher's list becomes the truth");
        // 10,000 joins and 2,500 leaves over the time it took: a frame an interval (100 ms),
        // more when one holds more than 1,000 members.
        let intervals = start.elapsed().as_millis() as usize / 100 + 1;
        assert!(
            watcher.frames <= intervals + 15,
            "{} frames in {intervals} intervals",
            watcher.frames
        );
        eprintln!(
            "# 10,000 joins and 2,500 leaves in {:?}: {} frames to this watcher",
            start.elapsed(),
            watcher.frames
        );
    }
    // A latecomer's list comes in frames of at most 1,000.
    let mut late = View::open(&app, "/rooms/hall?watch", "hall").await;
    late.until(&want).await;
    assert_eq!(late.frames, 8);
}

#[tokio::test]
async fn a_room_of_counts_only_sends_numbers() {
    let app = TestServer::new(server());
    let mut watcher = View::open(&app, "/rooms/arena?watch&counts", "arena").await;
    assert_eq!(watcher.list.count, Some(0));
    let mut fans = Vec::new();
    for i in 0..50 {
        fans.push(
            app.connect(&format!("/rooms/arena?name=f{i}"))
                .await
                .unwrap(),
        );
    }
    while watcher.list.count != Some(50) {
        watcher.read().await;
    }
    assert!(watcher.list.members.is_empty());
    assert!(watcher.frames <= 6, "{} frames", watcher.frames);
    fans.truncate(10);
    while watcher.list.count != Some(10) {
        watcher.read().await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_nothing_is_corrupted() {
    let app = TestServer::new(server());
    let name = "room \"odd\" \u{1e} ünïcode";
    let encoded = "room%20%22odd%22%20%1E%20%C3%BCn%C3%AFcode";
    let mut watcher = View::open(&app, &format!("/rooms/{encoded}?watch"), name).await;
    let mut ada = app
        .connect(&format!("/rooms/{encoded}?name=ada"))
        .await
        .unwrap();
    watcher.until(&[("ada", 1)]).await;

    // Too long a metadata, an empty key: errors that say why; the member is as it was.
    ada.send("big").await;
    let refused: String = ada.recv().await;
    assert!(refused.starts_with("error: the metadata is 5"), "{refused}");
    assert!(
        refused.ends_with("bytes of JSON; at most 4096"),
        "{refused}"
    );
    ada.send("nokey").await;
    let refused: String = ada.recv().await;
    assert_eq!(refused, "error: a member's key is 1 to 256 bytes, not 0");
    // Tracking itself a thousand times is being one member, with one connection.
    for _ in 0..1_000 {
        ada.send("again").await;
    }
    for _ in 0..1_000 {
        assert_eq!(ada.recv::<String>().await, "ok");
    }
    assert_eq!(truth(&app, name), HashMap::from([("ada".to_owned(), 1)]));
    // An update from a connection not tracked.
    let mut bystander = app.connect(&format!("/rooms/{encoded}")).await.unwrap();
    bystander.send("away").await;
    assert_eq!(
        bystander.recv::<String>().await,
        "error: the connection is not tracked here"
    );
    ada.send("unwatch").await;
    assert_eq!(ada.recv::<String>().await, "ok");
    watcher
        .client
        .expect_nothing(Duration::from_millis(250))
        .await;
    assert_eq!(watcher.list.members.len(), 1);
}

/// The README's example, compiled.
mod readme {
    use super::*;

    #[derive(Serialize, Deserialize, Clone)]
    struct Profile {
        name: String,
    }

    #[derive(Deserialize)]
    struct User {
        id: String,
        #[serde(flatten)]
        profile: Profile,
    }

    #[websocket("/readme/{room}")]
    fn room(room: String, Query(user): Query<User>, out: Out<String>, topics: Topics) {
        let here = topics.presence::<Profile>(format!("room:{room}"));
        here.watch(&out);
        if let Err(error) = here.track(&out, user.id.clone(), &user.profile) {
            out.close_with(CloseCode::POLICY, &error.to_string());
        }
        on_message(|Json(profile): Json<Profile>| {
            here.update(&out, &profile)?;
            Ok(())
        });
    }

    #[tokio::test]
    async fn it_tracks_and_updates() {
        let app = TestServer::new(Server::new().route(room));
        let mut view = View::open(&app, "/readme/x?id=u7&name=ann", "room:x").await;
        view.until(&[("u7", 1)]).await;
        view.client.send(Json(Profile { name: "Ann".into() })).await;
        view.read().await;
        assert_eq!(view.list.members["u7"].0["name"], "Ann");
    }
}
