use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_message(|text: String| out.write(text));
    on_message(|text: String| println!("{text}")); //~ ERROR duplicate `on_message` section
}

fn main() {}
