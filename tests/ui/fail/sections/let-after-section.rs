use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>) {
    on_message(|text: String| out.write(text));
    let greeting = "hi"; //~ ERROR move this `let` above the first section
    out.write(greeting);
}

fn main() {}
