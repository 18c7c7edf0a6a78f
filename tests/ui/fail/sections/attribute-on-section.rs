use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    #[cfg(feature = "verbose")] //~ ERROR attributes on a section are not supported
    on_close(|| println!("bye"));
    out.write("hello");
}

fn main() {}
