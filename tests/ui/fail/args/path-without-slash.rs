use wsock::prelude::*;

#[websocket("chat")] //~ ERROR expected a path starting with '/'
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
