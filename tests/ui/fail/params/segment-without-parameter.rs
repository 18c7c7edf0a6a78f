use wsock::prelude::*;

#[websocket("/rooms/{room}/seats/{seat}")] //~ ERROR has no function parameter `seat`
fn join(room: String, out: Out<String>) { //~ ERROR add a parameter `seat: T`
    out.write(room);
}

fn main() {}
