//! wsock inside axum and hyper: `Server::into_router` and `Server::into_service` next to an
//! app's own routes on one listener, with everything the built-in server does, and a
//! graceful shutdown that reaches the upgraded connections.
#![cfg(feature = "axum")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use common::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;

/// Says the client's address and the path it was reached at, then echoes.
#[websocket("/echo")]
fn echo(out: Out<String>, req: Request) {
    out.write(format!("{} {}", req.peer_addr(), req.path()));
    on_message(|text: String| out.write(text));
    on_close(|| record(&req, "closed"));
}

/// An axum app serving `app` on 127.0.0.1:0 with `ConnectInfo`, until `stop` fires; then
/// it awaits wsock's graceful shutdown, as the README tells users to.
struct App {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl App {
    async fn start(app: axum::Router, handle: wsock::Handle) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                handle.shutdown().await;
            })
            .await
        });
        App {
            addr,
            stop: Some(stop),
            served,
        }
    }

    /// Starts the shutdown; `stopped` waits for its end.
    fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn stop(mut self) {
        self.begin_stop();
        tokio::time::timeout(WAIT, self.served)
            .await
            .expect("axum did not stop in time")
            .unwrap()
            .unwrap();
    }
}

fn rest() -> axum::Router {
    axum::Router::new().route("/api/hello", get(|| async { "hello from axum" }))
}

#[tokio::test]
async fn rest_and_websocket_share_one_port_and_shutdown_closes_with_1001() {
    let ws = Server::new().route(echo);
    let handle = ws.handle();
    let mut app = App::start(rest().merge(ws.into_router()), handle.clone()).await;

    let response = raw_http(
        app.addr,
        b"GET /api/hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.ends_with("hello from axum"), "{response}");

    let id = unique_id("axum");
    let mut client = connect_with(app.addr, &format!("/echo?id={id}"), &[]).await;
    let greeting = next_text(&mut client).await;
    let local = client.get_ref().get_ref().local_addr().unwrap();
    // The peer address comes from axum's ConnectInfo.
    assert_eq!(greeting, format!("{local} /echo"));
    send(&mut client, "through axum").await;
    assert_eq!(next_text(&mut client).await, "through axum");
    assert_eq!(handle.open_connections(), 1);

    app.begin_stop();
    assert_eq!(close_frame(&mut client).await.0, 1001);
    app.stop().await;
    assert_eq!(wait_for(&id, "closed").await, ["closed"]);
    assert_eq!(handle.open_connections(), 0);
}

/// Under `nest_service`, axum strips the prefix: the endpoint at `/echo` answers `/ws/echo`
/// and sees the path `/echo`.
#[tokio::test]
async fn nested_under_a_prefix_the_endpoint_matches_the_rest_of_the_path() {
    let ws = Server::new().route(echo);
    let handle = ws.handle();
    let app = App::start(rest().nest_service("/ws", ws.into_service()), handle).await;
    let mut client = connect_with(app.addr, "/ws/echo", &[]).await;
    assert!(next_text(&mut client).await.ends_with(" /echo"));
    drop(client);
    let (status, _) = refused(app.addr, "/echo", &[]).await;
    assert_eq!(status, 404, "axum's own 404 outside the prefix");
    app.stop().await;
}

/// Limits, origins and hosts hold as in the built-in server; `max_connections` counts the
/// connections the service opened.
#[tokio::test]
async fn limits_origins_and_hosts_apply_inside_axum() {
    let ws = Server::new().route(echo).max_connections(1);
    let handle = ws.handle();
    let app = App::start(ws.into_router(), handle.clone()).await;

    let mut first = connect_with(app.addr, "/echo", &[]).await;
    next_text(&mut first).await;
    let (status, body) = refused(app.addr, "/echo", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "too many connections: try again later\n")
    );
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.open_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(connect_with(app.addr, "/echo", &[]).await);

    let (status, _) = refused(app.addr, "/echo", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    // The peer is on loopback: a name re-pointed at it is refused.
    let (status, body) = refused(app.addr, "/echo", &[("host", "evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn the_dev_console_and_pages_are_served_through_axum() {
    let ws = Server::new()
        .route(echo)
        .page("/", "<!doctype html><title>page</title>")
        .dev_console(true);
    let handle = ws.handle();
    let app = App::start(ws.into_router(), handle).await;
    let page = raw_http(app.addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("<title>page</title>"));
    let console = raw_http(app.addr, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&console), 200, "{console}");
    assert!(console.contains("<code>echo</code>"), "{console}");
    app.stop().await;
}

/// hyper alone serves the same service; with no address in the request's extensions, the
/// peer address is `0.0.0.0:0`.
#[tokio::test]
async fn hyper_serves_the_service_with_upgrades() {
    let ws = Server::new().route(echo);
    let service = hyper_util::service::TowerToHyperService::new(ws.into_service());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades()
            .await
    });
    let mut client = connect_with(addr, "/echo", &[]).await;
    assert_eq!(next_text(&mut client).await, "0.0.0.0:0 /echo");
    send(&mut client, "through hyper").await;
    assert_eq!(next(&mut client).await, WsMessage::text("through hyper"));
    drop(client);
    served.await.unwrap().unwrap();
}
