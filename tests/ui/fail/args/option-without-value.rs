use wsock::prelude::*;

#[websocket("/chat", protocol)]
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
