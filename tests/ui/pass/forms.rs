//! Every accepted form of endpoint and section.
use wsock::prelude::*;

#[websocket("/sync")]
fn sync_fn(out: Out<String>) {
    on_message(|text: String| out.write(text));
}

#[websocket("/async")]
async fn async_fn(out: Out<String>) {
    tokio::task::yield_now().await;
    on_message(|text: String| out.write(text));
}

#[websocket("/async-closure")]
fn async_closure(out: Out<String>) {
    on_message(async |text: String| {
        out.send(text).await.ok();
    });
    on_close(async || tokio::task::yield_now().await);
}

#[websocket("/async-block")]
fn async_block(out: Out<String>) {
    on_message(|text: String| async move {
        out.send(text).await.ok();
    });
    on_close(|| async { tokio::task::yield_now().await });
}

#[websocket("/results")]
fn results(out: Out<String>) -> Result<(), wsock::Error> {
    let limit: usize = "10".parse()?;
    on_message(|text: String| {
        let n: u32 = text.parse()?;
        out.write((n * 2).to_string());
        Ok(())
    });
    on_close(|| -> Result<(), wsock::Error> { Ok(()) });
    out.write(limit.to_string());
    Ok(())
}

#[websocket("/async-results")]
async fn async_results(out: Out<String>) -> Result<(), wsock::Error> {
    on_message(async |text: String| {
        out.send(text).await?;
        Ok(())
    });
    Ok(())
}

#[websocket("/types")]
fn types(out: Out<wsock::Message>, req: Request) {
    on_message(|message: wsock::Message| out.write(message));
    on_error(|error| println!("{error} from {}", req.peer_addr()));
}

#[websocket("/binary")]
fn binary(out: Out<Vec<u8>>) {
    on_message(|bytes: wsock::Bytes| out.write(bytes.to_vec()));
}

/// The function's name may be reused by a local.
#[websocket("/count")]
fn count(out: Out<String>) {
    let mut count = 0;
    on_message(|_: String| {
        count += 1;
        out.write(count.to_string());
    });
}

/// No sections: input is discarded.
#[websocket("/quiet")]
fn quiet(out: Out<String>) {
    out.write("hi");
}

pub mod public {
    use wsock::prelude::*;

    #[websocket("/pub")]
    pub fn visible(out: Out<String>) {
        out.close();
    }
}

fn main() {
    let _server = Server::new()
        .route(sync_fn)
        .route(async_fn)
        .route(async_closure)
        .route(async_block)
        .route(results)
        .route(async_results)
        .route(types)
        .route(binary)
        .route(count)
        .route(quiet)
        .route(public::visible);
}

/// Docs, `cfg`, lint levels and `deprecated` go where they make sense.
#[websocket("/attributes")]
#[cfg(not(feature = "never"))]
#[allow(unused_variables)]
#[deprecated = "use `quiet`"]
fn attributes(out: Out<String>) {
    let unused = 1;
    out.close();
}

#[allow(deprecated)]
fn _routes_a_deprecated_endpoint() -> Server {
    Server::new().route(attributes)
}
