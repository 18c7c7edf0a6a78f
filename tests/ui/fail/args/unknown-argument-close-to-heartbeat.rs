use wsock::prelude::*;

#[websocket("/ticker", hearbeat = false)] //~ ERROR unknown argument `hearbeat`, did you mean `heartbeat`?
fn ticker(out: Out<String>) {
    out.write("tick");
}

fn main() {}
