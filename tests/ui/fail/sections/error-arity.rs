use wsock::prelude::*;

#[websocket("/")]
fn index(out: Out<String>) {
    on_message(|text: String| out.write(text));
    on_error(|| out.write("that was not text"));
}

fn main() {}
