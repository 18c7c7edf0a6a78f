use wsock::prelude::*;

#[websocket("/rooms/{room}", resume = "yes")] //~ ERROR expected `true` or `false`
fn room(room: String, out: Out<String>) {
    out.write(room);
}

fn main() {}
