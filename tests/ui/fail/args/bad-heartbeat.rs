use wsock::prelude::*;

#[websocket("/ticker", heartbeat = "off")] //~ ERROR expected `true` or `false`
fn ticker(out: Out<String>) {
    out.write("tick");
}

fn main() {}
