use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_message(|text: String, extra: String| out.write(text + &extra)); //~ ERROR takes one parameter
}

fn main() {}
