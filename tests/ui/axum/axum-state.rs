use axum::extract::State;
use wsock::prelude::*;

#[derive(Clone, Default)]
struct Polls;

#[websocket("/polls")]
fn polls(State(polls): State<Polls>, out: Out<String>) { //~ ERROR this `State` is `axum::extract::State`
    let _ = polls;
    out.write("hi");
}

fn main() {}
