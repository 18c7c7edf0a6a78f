use wsock::prelude::*;

const PROTOCOL: &str = "chat.v1";

#[websocket("/chat", protocol = PROTOCOL)]
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
