//! The live dashboard of the README's Topics section, as the delivery-mode tests run it (the
//! facade's and wsock-redis's, through `#[path]`): samples published to one topic, each
//! viewer choosing how it takes them in its URL, pausing and playing with a message.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wsock::prelude::*;

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
