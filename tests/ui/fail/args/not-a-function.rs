use wsock::prelude::*;

#[websocket("/")]
struct Chat; //~ ERROR `#[websocket]` goes on a function

fn main() {}
