use wsock::prelude::*;

/// The function's name is reused by a section's parameter.
#[websocket("/text")]
fn text(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

fn main() {}
