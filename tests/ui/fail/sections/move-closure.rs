use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_message(move |text: String| out.write(text)); //~ ERROR remove `move`
    out.write("hello"); // no second error about a moved `out`
}

fn main() {}
