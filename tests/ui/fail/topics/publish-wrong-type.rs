use wsock::prelude::*;

#[websocket("/news")]
fn news(out: Out<Json<u32>>, topics: Topics) {
    let news = topics.topic::<Json<u32>>("news");
    news.subscribe(&out);
    on_message(|text: String| {
        let _ = news.publish(text); //~ ERROR a `String` cannot be published to a `Topic<Json<u32>>`
    });
}

fn main() {}
