use wsock::prelude::*;

#[websocket("/")]
fn numbers(out: Out<String>) {
    on_message(|event: u32| out.write(event.to_string())); //~ ERROR `u32` cannot be received
}

fn main() {}
