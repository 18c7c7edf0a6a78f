use wsock::prelude::*;

#[websocket("/rooms/x{room}//{}")] //~ ERROR malformed segment
fn join(out: Out<String>) {
    out.write("hi");
}

fn main() {}
