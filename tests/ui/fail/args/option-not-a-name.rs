use wsock::prelude::*;

#[websocket("/chat", "chat.v1")]
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
