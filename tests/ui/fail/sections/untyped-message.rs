use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_message(|text| out.write(text)); //~ ERROR needs its type
}

fn main() {}
