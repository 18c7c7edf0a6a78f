use axum::extract::Query;
use serde::Deserialize;
use wsock::prelude::*;

#[derive(Deserialize)]
struct Join {
    name: String,
}

#[websocket("/join")]
fn join(Query(join): Query<Join>, out: Out<String>) { //~ ERROR this `Query` is `axum::extract::Query`
    out.write(join.name);
}

fn main() {}
