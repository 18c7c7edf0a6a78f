use wsock::prelude::*;

#[websocket("/upload", max_message_size = "4MiB", max_message_size = "8MiB")] //~ ERROR given twice
fn upload(out: Out<String>) {
    out.write("hi");
}

fn main() {}
