use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    {
        on_close(|| println!("bye")); //~ ERROR must be a top-level statement
    }
    out.write("hi");
}

fn main() {}
