use wsock::prelude::*;

#[websocket("/chat", protocol = "chat v1")] //~ ERROR expected a subprotocol name
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
