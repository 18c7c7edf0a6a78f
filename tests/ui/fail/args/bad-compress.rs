use wsock::prelude::*;

#[websocket("/vault", compress = "no")] //~ ERROR expected `true` or `false`
fn vault(out: Out<String>) {
    out.write("secret");
}

fn main() {}
