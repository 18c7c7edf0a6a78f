//! The live dashboard of the README's Topics section, as the delivery-mode tests run it (the
//! facade's and wsock-redis's, through `#[path]`): samples published to one topic, each
//! viewer choosing how it takes them in its URL, pausing and playing with a message; and the
//! viewers' side, raw clients that can stop reading. The crate that includes it has a
//! `common` module with its `WAIT`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;

use crate::common::WAIT;

/// A sample, as published on the `samples` topic.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Sample {
    pub sensor: String,
    /// Numbers the samples of the whole topic, from 1.
    pub seq: u64,
    /// When it was published, in ms since the Unix epoch.
    pub at_ms: u64,
    /// Padding, so that a few samples fill a socket's buffers.
    pub pad: String,
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// How a viewer takes the samples: `?mode=latest&keyed=true&rate=5&sensor=cpu&paused=true`.
#[derive(Deserialize, Default)]
pub struct View {
    mode: Option<String>,
    rate: Option<u32>,
    keyed: Option<bool>,
    sensor: Option<String>,
    paused: Option<bool>,
}

impl View {
    fn delivery(self) -> Delivery<Json<Sample>> {
        let mut delivery = match (self.mode.as_deref(), self.rate) {
            (_, Some(rate)) => Delivery::at_most(rate),
            (Some("latest"), None) => Delivery::latest(),
            (Some("droppable"), None) => Delivery::droppable(),
            _ => Delivery::every(),
        };
        if self.keyed == Some(true) {
            delivery = delivery.by_key(|sample: &Json<Sample>| sample.0.sensor.clone());
        }
        if let Some(sensor) = self.sensor {
            delivery = delivery.filter(move |sample: &Json<Sample>| sample.0.sensor == sensor);
        }
        if self.paused == Some(true) {
            delivery = delivery.paused();
        }
        delivery
    }
}

/// A viewer: subscribes as its URL says; `pause` and `play` pause and resume it, each
/// answered with a sample from the sensor `ack` once done.
#[websocket("/dash")]
pub fn dash(Query(view): Query<View>, out: Out<Json<Sample>>, topics: Topics) {
    let samples = topics.topic::<Json<Sample>>("samples");
    samples.subscribe_with(&out, view.delivery());
    on_message(|command: String| {
        match command.as_str() {
            "pause" => samples.pause(&out),
            "play" => samples.unpause(&out),
            _ => return Err(Error::msg("pause or play")),
        }
        out.write(Json(Sample {
            sensor: "ack".into(),
            seq: 0,
            at_ms: now_ms(),
            pad: command,
        }));
        Ok(())
    });
}

/// Publishes sample `seq` of `sensor` with `pad` bytes of padding.
pub fn publish(topic: &Topic<Json<Sample>>, sensor: &str, seq: u64, pad: usize) {
    let sample = Sample {
        sensor: sensor.into(),
        seq,
        at_ms: now_ms(),
        pad: "x".repeat(pad),
    };
    let _ = topic.publish(Json(sample));
}

/// A viewer of the dashboard: a client that reads only when the test asks it to.
pub type Viewer = WebSocketStream<TcpStream>;

/// A viewer on a socket whose receive buffer is small (4 KiB asked; the kernel doubles it),
/// so that a viewer that stops reading backs the server up after a few samples.
pub async fn viewer(addr: SocketAddr, query: &str) -> Viewer {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    let url = format!("ws://{addr}/dash?{query}");
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    assert_eq!(response.status(), 101);
    ws
}

/// The next sample, or `None` if none comes within `within`; a close fails the test.
pub async fn sample(viewer: &mut Viewer, within: Duration) -> Option<Sample> {
    loop {
        let message = match tokio::time::timeout(within, viewer.next()).await {
            Err(_) => return None,
            Ok(message) => message.expect("the connection ended").expect("read failed"),
        };
        match message {
            WsMessage::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
            WsMessage::Close(frame) => panic!("the viewer was closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Sends `command` and waits for its acknowledgement, keeping the samples read meanwhile.
pub async fn command(viewer: &mut Viewer, command: &str, read: &mut Vec<Sample>) {
    tokio::time::timeout(WAIT, viewer.send(WsMessage::text(command)))
        .await
        .expect("send timed out")
        .expect("send failed");
    loop {
        let got = sample(viewer, WAIT).await.expect("no acknowledgement");
        if got.sensor == "ack" {
            assert_eq!(got.pad, command);
            return;
        }
        read.push(got);
    }
}

/// Everything that comes until `quiet` passes without a sample.
pub async fn read_all(viewer: &mut Viewer, quiet: Duration) -> Vec<Sample> {
    let mut read = Vec::new();
    while let Some(got) = sample(viewer, quiet).await {
        read.push(got);
    }
    read
}

/// The samples' numbers.
pub fn seqs(samples: &[Sample]) -> Vec<u64> {
    samples.iter().map(|sample| sample.seq).collect()
}

/// Waits until `topics` has `n` viewers of the samples on this node.
pub async fn await_viewers(topics: &Topics, n: usize) {
    let deadline = Instant::now() + WAIT;
    while topics.subscribers("samples") != n {
        assert!(Instant::now() < deadline, "the viewers did not subscribe");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
