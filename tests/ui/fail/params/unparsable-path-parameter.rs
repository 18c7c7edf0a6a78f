use wsock::prelude::*;

struct Room;

#[websocket("/rooms/{room}")]
fn join(room: Room, out: Out<String>) { //~ ERROR `Room` cannot be parsed from a path segment
    let _ = room;
    out.write("hi");
}

fn main() {}
