//! A live poll service in one file, as an axum user writes it: REST routes in axum to create
//! and read polls, and `#[websocket("/polls/{id}/live")]`, which takes votes as JSON and
//! broadcasts the counts on a topic, with axum's imports and wsock's prelude side by side.
//!
//! `Json` and `State` are axum's in this file (the explicit import wins over the prelude's
//! glob), so the endpoint names wsock's in full: `wsock::Json`. Written bare, the build says
//! which type it got and which to write (tests/ui/axum). An unknown poll is refused with 404
//! before the upgrade by the `{id}` parameter's own type, `KnownPoll`, which looks the poll up
//! once; a vote over the JSON endpoint's default limit (64 KiB) closes with 1009.
#![cfg(feature = "axum")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wsock::prelude::*;

// ---------------------------------------------------------------------------------------------
// The service

/// The polls, shared by the REST routes (axum's state) and the endpoint (wsock's).
#[derive(Clone, Default)]
struct Polls {
    polls: Arc<Mutex<HashMap<u64, Arc<Poll>>>>,
    next: Arc<AtomicU64>,
}

struct Poll {
    question: String,
    options: Vec<String>,
    counts: Mutex<Vec<u64>>,
}

impl Polls {
    fn get(&self, id: u64) -> Option<Arc<Poll>> {
        self.polls.lock().unwrap().get(&id).cloned()
    }
}

impl Poll {
    fn counts(&self) -> Counts {
        Counts {
            counts: self.counts.lock().unwrap().clone(),
        }
    }

    /// Counts a vote; `None` for an option the poll does not have.
    fn vote(&self, option: usize) -> Option<Counts> {
        let mut counts = self.counts.lock().unwrap();
        *counts.get_mut(option)? += 1;
        Some(Counts {
            counts: counts.clone(),
        })
    }
}

#[derive(Deserialize)]
struct NewPoll {
    question: String,
    options: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct PollView {
    id: u64,
    question: String,
    options: Vec<String>,
    counts: Vec<u64>,
}

#[derive(Deserialize)]
struct Vote {
    option: usize,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Counts {
    counts: Vec<u64>,
}

/// `POST /polls`: creates a poll.
async fn create(
    State(polls): State<Polls>,
    Json(new): Json<NewPoll>,
) -> (StatusCode, Json<PollView>) {
    let id = polls.next.fetch_add(1, Ordering::Relaxed) + 1;
    let poll = Poll {
        counts: Mutex::new(vec![0; new.options.len()]),
        question: new.question,
        options: new.options,
    };
    let view = view(id, &poll);
    polls.polls.lock().unwrap().insert(id, Arc::new(poll));
    (StatusCode::CREATED, Json(view))
}

/// `GET /polls/{id}`: a poll and its counts.
async fn read(
    State(polls): State<Polls>,
    Path(id): Path<u64>,
) -> Result<Json<PollView>, StatusCode> {
    let poll = polls.get(id).ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(view(id, &poll)))
}

fn view(id: u64, poll: &Poll) -> PollView {
    PollView {
        id,
        question: poll.question.clone(),
        options: poll.options.clone(),
        counts: poll.counts().counts,
    }
}

/// A poll that exists: the `{id}` segment, looked up once, before the upgrade. An id that is
/// not a number or names no poll refuses the client with 404, and no WebSocket is opened.
struct KnownPoll {
    id: u64,
    poll: Arc<Poll>,
}

impl FromPathParam for KnownPoll {
    async fn from_path_param(id: &str, req: &Request) -> Result<Self, Reject> {
        let polls = req.state::<Polls>().ok_or_else(Reject::internal_error)?;
        let found = id.parse().ok().and_then(|id| Some((id, polls.get(id)?)));
        match found {
            Some((id, poll)) => Ok(KnownPoll { id, poll }),
            None => Err(Reject::not_found().with_body(format!("no poll {id}"))),
        }
    }
}

/// The poll's counts now, then after every vote, anyone's.
#[websocket("/polls/{id}/live")]
fn live(id: KnownPoll, topics: Topics, out: Out<wsock::Json<Counts>>) {
    let topic = topics.topic::<wsock::Json<Counts>>(format!("poll:{}", id.id));
    topic.subscribe(&out);
    out.write(wsock::Json(id.poll.counts()));
    on_message(|wsock::Json(vote): wsock::Json<Vote>| {
        match id.poll.vote(vote.option) {
            Some(counts) => topic.publish(wsock::Json(counts))?,
            None => out.close_with(CloseCode::POLICY, "no such option"),
        }
        Ok(())
    });
}

/// The REST routes and the endpoint, on the same polls, as one axum app.
fn app(polls: Polls) -> (Router, wsock::Handle) {
    let ws = Server::new().state(polls.clone()).route(live);
    let handle = ws.handle();
    let app = Router::new()
        .route("/polls", post(create))
        .route("/polls/{id}", get(read))
        .with_state(polls)
        .merge(ws.into_router());
    (app, handle)
}

// ---------------------------------------------------------------------------------------------
// The tests

use common::{Client, WAIT, close_frame, next_text, raw_http, refused, send, status_of};
use tokio::net::TcpListener;

/// The app on 127.0.0.1:0.
async fn serve() -> (SocketAddr, wsock::Handle) {
    let (app, handle) = app(Polls::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (addr, handle)
}

/// An HTTP request with an optional JSON body: the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
    let body = json.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = raw_http(addr, request.as_bytes()).await;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status_of(&response), body.to_owned())
}

async fn create_poll(addr: SocketAddr) -> u64 {
    let new = r#"{"question":"tabs or spaces?","options":["tabs","spaces"]}"#;
    let (status, body) = http(addr, "POST", "/polls", Some(new)).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<PollView>(&body).unwrap().id
}

async fn counts(client: &mut Client) -> Vec<u64> {
    serde_json::from_str::<Counts>(&next_text(client).await)
        .unwrap()
        .counts
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    common::connect_with(addr, path, &[]).await
}

#[tokio::test]
async fn votes_reach_every_watcher_and_the_rest_route() {
    let (addr, _handle) = serve().await;
    let id = create_poll(addr).await;
    let mut ada = connect(addr, &format!("/polls/{id}/live")).await;
    let mut bob = connect(addr, &format!("/polls/{id}/live")).await;
    assert_eq!(counts(&mut ada).await, [0, 0]);
    assert_eq!(counts(&mut bob).await, [0, 0]);

    send(&mut ada, r#"{"option":1}"#).await;
    assert_eq!(counts(&mut ada).await, [0, 1]);
    assert_eq!(counts(&mut bob).await, [0, 1]);
    send(&mut bob, r#"{"option":0}"#).await;
    assert_eq!(counts(&mut ada).await, [1, 1]);
    assert_eq!(counts(&mut bob).await, [1, 1]);

    let (status, body) = http(addr, "GET", &format!("/polls/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<PollView>(&body).unwrap().counts,
        [1, 1]
    );

    send(&mut ada, r#"{"option":7}"#).await;
    assert_eq!(
        close_frame(&mut ada).await,
        (1008, "no such option".to_owned())
    );
}

#[tokio::test]
async fn an_unknown_poll_is_refused_with_404_before_the_upgrade() {
    let (addr, _handle) = serve().await;
    let id = create_poll(addr).await;
    assert_eq!(
        refused(addr, &format!("/polls/{}/live", id + 1), &[]).await,
        (404, format!("no poll {}\n", id + 1))
    );
    assert_eq!(
        refused(addr, "/polls/tabs/live", &[]).await,
        (404, "no poll tabs\n".to_owned())
    );
    // The REST route agrees.
    assert_eq!(http(addr, "GET", "/polls/99", None).await.0, 404);
}

#[tokio::test]
async fn a_vote_over_the_json_limit_closes_with_1009() {
    let (addr, _handle) = serve().await;
    let id = create_poll(addr).await;
    let mut client = connect(addr, &format!("/polls/{id}/live")).await;
    assert_eq!(counts(&mut client).await, [0, 0]);
    // A vote padded with an unknown field to just over 64 KiB: serde would take it, the limit
    // does not.
    let padding = "x".repeat(64 << 10);
    let padded = format!(r#"{{"option":0,"padding":"{padding}"}}"#);
    send(&mut client, &padded).await;
    let (code, _) = tokio::time::timeout(WAIT, close_frame(&mut client))
        .await
        .expect("no close in time");
    assert_eq!(code, 1009);
    // Nothing was counted.
    let (_, body) = http(addr, "GET", &format!("/polls/{id}"), None).await;
    assert_eq!(
        serde_json::from_str::<PollView>(&body).unwrap().counts,
        [0, 0]
    );
}
