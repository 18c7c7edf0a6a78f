use wsock::prelude::*;

/// Path parameters are parsed before the upgrade; the others are extractors.
#[websocket("/rooms/{room}/seats/{seat}")]
fn join(room: String, seat: u16, out: Out<String>) {
    out.write(format!("seat {seat} in {room}"));
}

fn main() {}
