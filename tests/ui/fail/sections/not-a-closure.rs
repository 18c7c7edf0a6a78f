use wsock::prelude::*;

fn log(text: String) {
    println!("{text}");
}

#[websocket("/")]
fn echo(out: Out<String>) {
    on_message(log); //~ ERROR expected a closure
    out.write("hi");
}

fn main() {}
