use wsock::prelude::*;

#[websocket("/upload", max_message_size = "4 megabytes")] //~ ERROR expected a size above zero
fn upload(out: Out<String>) {
    out.write("hi");
}

fn main() {}
