use wsock::prelude::*;

#[websocket("/chat", protocol = "chat.v1", protocol = "chat.v1")]
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
