use wsock::prelude::*;

#[websocket("/files/../secrets")]
fn files(out: Out<String>) {
    out.write("hi");
}

fn main() {}
