use wsock::prelude::*;

#[websocket("/rooms/{room}/{room}")] //~ ERROR appears twice
fn join(room: String, out: Out<String>) {
    out.write(room);
}

fn main() {}
