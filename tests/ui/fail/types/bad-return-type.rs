use wsock::prelude::*;

#[websocket("/")]
fn numbers(out: Out<String>) -> u32 { //~ ERROR `u32` is not a valid return type
    out.write("hi");
    7
}

fn main() {}
