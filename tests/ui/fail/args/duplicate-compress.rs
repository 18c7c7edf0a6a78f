use wsock::prelude::*;

#[websocket("/vault", compress = false, compress = true)] //~ ERROR `compress` is given twice
fn vault(out: Out<String>) {
    out.write("secret");
}

fn main() {}
