use wsock::prelude::*;

/// Subprotocols, preferred first, and a message limit of its own.
#[websocket("/chat", protocol = "chat.v2", protocol = "chat.v1", max_message_size = "4MiB")]
fn chat(out: Out<String>, req: Request) {
    out.write(format!("speaking {}", req.protocol().unwrap_or("nothing")));
}

fn main() {}
