use wsock::prelude::*;

/// Subprotocols, preferred first, a message limit of its own, no compression, no heartbeats,
/// and topics that resume.
#[websocket(
    "/chat",
    protocol = "chat.v2",
    protocol = "chat.v1",
    max_message_size = "4MiB",
    compress = false,
    heartbeat = false,
    resume = true
)]
fn chat(out: Out<String>, req: Request) {
    out.write(format!("speaking {}", req.protocol().unwrap_or("nothing")));
}

fn main() {}
