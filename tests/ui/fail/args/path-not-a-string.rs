use wsock::prelude::*;

#[websocket(chat)] //~ ERROR expected the endpoint's path as a string literal
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
