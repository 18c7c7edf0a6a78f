use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_close(|reason: String| println!("{reason}")); //~ ERROR takes no parameters
    out.write("hi");
}

fn main() {}
