use wsock::prelude::*;

#[websocket("/chat", protocols = "chat.v1")] //~ ERROR unknown argument `protocols`
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
