//! Every kind of parameter an endpoint takes.
use serde::Deserialize;
use wsock::prelude::*;

#[derive(Deserialize)]
struct Filter {
    topic: Option<String>,
}

struct Pool;

struct Admin;

impl FromRequest for Admin {
    async fn from_request(req: &Request) -> Result<Self, Reject> {
        tokio::task::yield_now().await;
        match req.session().get("role") {
            Some("admin") => Ok(Admin),
            _ => Err(Reject::forbidden()),
        }
    }
}

#[websocket("/rooms/{room}/seats/{seat}")]
async fn everything(
    room: String,
    seat: u16,
    Query(filter): Query<Filter>,
    State(pool): State<Pool>,
    session: Session,
    _admin: Admin,
    req: Request,
    out: Out<Json<Vec<String>>>,
) -> Result<(), wsock::Error> {
    let _pool: &Pool = &pool;
    let user = session.get("user").unwrap_or("guest").to_owned();
    on_message(async |Json(words): Json<Vec<String>>| {
        out.send(Json(words)).await?;
        Ok(())
    });
    on_close(|| println!("{user} left {room}/{seat} ({:?}) from {}", filter.topic, req.peer_addr()));
    Ok(())
}

fn main() {
    let _server = Server::new().state(Pool).route(everything);
}
