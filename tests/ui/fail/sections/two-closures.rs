use wsock::prelude::*;

#[websocket("/")]
fn index(out: Out<String>) {
    on_message(|text: String| out.write(text), |text: String| out.write(text));
}

fn main() {}
