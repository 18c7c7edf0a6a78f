use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_mesage(|text: String| out.write(text)); //~ ERROR did you mean `on_message`?
}

fn main() {}
