// An `Rc` used by an async section lives across its awaits, but a connection runs on any
// worker thread, so its state must be `Send`: both errors point at the function and the section.
use std::rc::Rc;

use wsock::prelude::*;

#[websocket("/count")]
async fn count(out: Out<String>) {
    let seen = Rc::new(std::cell::Cell::new(0));
    on_message(async |text: String| {
        seen.set(seen.get() + 1);
        out.send(text).await.ok();
    });
}

fn main() {}
