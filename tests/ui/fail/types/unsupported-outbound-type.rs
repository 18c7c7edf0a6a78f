use wsock::prelude::*;

#[websocket("/")]
fn numbers(out: Out<u32>) { //~ ERROR `u32` cannot be sent
    out.write(1u32);
}

fn main() {}
