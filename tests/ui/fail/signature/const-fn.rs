use wsock::prelude::*;

#[websocket("/")]
const fn chat(out: Out<String>) { //~ ERROR cannot be a `const fn`
    out.write("hi");
}

fn main() {}
