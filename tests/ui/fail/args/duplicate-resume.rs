use wsock::prelude::*;

#[websocket("/rooms/{room}", resume = true, resume = true)] //~ ERROR `resume` is given twice
fn room(room: String, out: Out<String>) {
    out.write(room);
}

fn main() {}
