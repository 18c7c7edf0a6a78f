use wsock::prelude::*;

/// Logs every event, says hello, logs the disconnect.
#[websocket("/")]
fn index(out: Out<String>) {
    on_message(|event: String| {
        println!("{event}");
    });
    on_close(|| {
        println!("Disconnected");
    });
    out.write("Hello!");
}

/// Discards all input, says hello and closes.
#[websocket("/hello")]
fn hello(out: Out<String>) {
    out.write("Hello!");
    out.close();
}

fn main() {}
