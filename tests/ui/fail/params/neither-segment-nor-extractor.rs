use wsock::prelude::*;

// `seat` is not in the path, and `u16` is not an extractor.
#[websocket("/rooms/{room}")]
fn join(room: String, seat: u16, out: Out<String>) { //~ ERROR `u16` cannot be a parameter
    out.write(format!("{room} {seat}"));
}

fn main() {}
