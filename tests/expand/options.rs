use wsock::prelude::*;

/// Subprotocols, preferred first, a message limit of its own, and no compression.
#[websocket(
    "/chat",
    protocol = "chat.v2",
    protocol = "chat.v1",
    max_message_size = "4MiB",
    compress = false
)]
fn chat(out: Out<String>, req: Request) {
    out.write(format!("speaking {}", req.protocol().unwrap_or("nothing")));
}

fn main() {}
