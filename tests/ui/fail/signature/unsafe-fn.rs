use wsock::prelude::*;

#[websocket("/")]
unsafe fn chat(out: Out<String>) { //~ ERROR cannot be an `unsafe fn`
    out.write("hi");
}

fn main() {}
