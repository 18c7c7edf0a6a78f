use wsock::prelude::*;

#[websocket("/chat?room=blue")]
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
