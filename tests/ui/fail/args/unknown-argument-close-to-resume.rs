use wsock::prelude::*;

#[websocket("/rooms/{room}", resum = true)] //~ ERROR unknown argument `resum`, did you mean `resume`?
fn room(room: String, out: Out<String>) {
    out.write(room);
}

fn main() {}
