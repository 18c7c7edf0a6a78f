use wsock::prelude::*;

#[websocket("/")]
extern "C" fn index(out: Out<String>) {
    out.write("hi");
}

fn main() {}
