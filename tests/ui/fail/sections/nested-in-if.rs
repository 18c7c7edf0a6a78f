use wsock::prelude::*;

#[websocket("/")]
fn echo(out: Out<String>, req: Request) {
    if req.query().is_some() {
        on_message(|text: String| out.write(text)); //~ ERROR must be a top-level statement
    }
}

fn main() {}
