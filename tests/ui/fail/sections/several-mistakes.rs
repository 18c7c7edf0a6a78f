use wsock::prelude::*;

// Independent mistakes are all reported in one build.
#[websocket("chat")] //~ ERROR expected a path starting with '/'
fn chat(out: Out<String>) {
    on_message(move |text: String| out.write(text)); //~ ERROR remove `move`
    on_clse(|| println!("bye")); //~ ERROR did you mean `on_close`?
    let late = 1; //~ ERROR move this `let` above the first section
    println!("{late}");
}

fn main() {}
