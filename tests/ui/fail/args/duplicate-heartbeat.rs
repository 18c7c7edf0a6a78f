use wsock::prelude::*;

#[websocket("/ticker", heartbeat = false, heartbeat = true)] //~ ERROR `heartbeat` is given twice
fn ticker(out: Out<String>) {
    out.write("tick");
}

fn main() {}
