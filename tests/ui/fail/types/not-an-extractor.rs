use wsock::prelude::*;

#[websocket("/")]
fn numbers(out: Out<String>, limit: u32) { //~ ERROR `u32` cannot be a parameter
    out.write(limit.to_string());
}

fn main() {}
