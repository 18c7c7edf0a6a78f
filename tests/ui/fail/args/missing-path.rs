use wsock::prelude::*;

#[websocket] //~ ERROR missing path
fn chat(out: Out<String>) {
    out.write("hi");
}

fn main() {}
