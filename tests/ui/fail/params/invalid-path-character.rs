use wsock::prelude::*;

#[websocket("/chat room")] //~ ERROR cannot appear in a path segment
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
