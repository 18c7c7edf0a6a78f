//! A path parameter resolved by its own type, with the request and the state at hand.
use std::collections::HashMap;
use std::sync::Arc;

use wsock::prelude::*;

struct Rooms(HashMap<u64, Arc<str>>);

struct KnownRoom(Arc<str>);

impl FromPathParam for KnownRoom {
    async fn from_path_param(id: &str, req: &Request) -> Result<Self, Reject> {
        let rooms = req.state::<Rooms>().ok_or_else(Reject::internal_error)?;
        let room = id.parse().ok().and_then(|id| rooms.0.get(&id).cloned());
        room.map(KnownRoom)
            .ok_or_else(|| Reject::not_found().with_body(format!("no room {id}")))
    }
}

#[websocket("/rooms/{room}/seats/{seat}")]
fn join(room: KnownRoom, seat: u16, out: Out<String>) {
    out.write(format!("{} {seat}", room.0));
}

fn main() {
    let _server = Server::new().state(Rooms(HashMap::new())).route(join);
}
