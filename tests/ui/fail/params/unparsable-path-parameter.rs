use wsock::prelude::*;

struct Room;

#[websocket("/rooms/{room}")]
fn join(room: Room, out: Out<String>) { //~ ERROR `Room` cannot be a path parameter
    let _ = room;
    out.write("hi");
}

fn main() {}
