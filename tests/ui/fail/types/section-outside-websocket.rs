use wsock::prelude::*;

fn not_an_endpoint() {
    on_message(|text: String| println!("{text}")); //~ ERROR sections can only be top-level statements
}

fn main() {}
