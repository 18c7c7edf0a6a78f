use axum::extract::Request;
use wsock::prelude::*;

#[websocket("/")]
fn index(req: Request, out: Out<String>) { //~ ERROR this `Request` is `http::Request`
    out.write(req.uri().to_string());
}

fn main() {}
