// Two uses of axum's `Json`, two errors; the writes add none.
use axum::Json;
use serde::{Deserialize, Serialize};
use wsock::prelude::*;

#[derive(Deserialize)]
struct Vote {
    option: usize,
}

#[derive(Serialize)]
struct Counts {
    counts: Vec<u64>,
}

#[websocket("/vote")]
fn vote(out: Out<Json<Counts>>) { //~ ERROR this `Json` is `axum::Json`
    on_message(|Json(vote): Json<Vote>| { //~ ERROR this `Json` is `axum::Json`
        out.write(Json(Counts { counts: vec![vote.option as u64] }));
    });
    out.write(Json(Counts { counts: Vec::new() }));
}

fn main() {}
