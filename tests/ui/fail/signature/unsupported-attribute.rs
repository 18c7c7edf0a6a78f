use wsock::prelude::*;

#[websocket("/")]
#[inline] //~ ERROR `#[inline]` is not supported on a `#[websocket]` function
fn echo(out: Out<String>) {
    out.write("hello");
}

fn main() {}
