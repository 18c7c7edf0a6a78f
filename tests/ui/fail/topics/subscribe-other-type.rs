use wsock::prelude::*;

#[websocket("/news")]
fn news(out: Out<String>, topics: Topics) {
    let news = topics.topic::<Json<u32>>("news");
    news.subscribe(&out); //~ ERROR `Out<String>` cannot subscribe to a `Topic<Json<u32>>`
}

fn main() {}
