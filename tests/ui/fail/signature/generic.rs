use wsock::prelude::*;

#[websocket("/")]
fn echo<T: Send>(out: Out<String>) { //~ ERROR cannot be generic
    on_message(|text: String| out.write(text));
}

fn main() {}
