use std::time::Duration;
use wsock::prelude::*;

#[websocket("/")]
fn slow(out: Out<String>) {
    tokio::time::sleep(Duration::from_millis(10)).await; //~ ERROR make the endpoint an `async fn`
    out.write("hi");
}

fn main() {}
