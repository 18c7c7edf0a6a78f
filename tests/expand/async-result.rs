use wsock::prelude::*;

/// Counts messages, answers asynchronously, and uses `?` in the ready code and a section.
#[websocket("/count")]
async fn count(out: Out<String>, req: Request) -> Result<(), wsock::Error> {
    let start: u64 = req.query_param("start").unwrap_or_default().parse()?;
    let mut count = start;
    on_message(async |text: String| {
        count += 1;
        out.send(format!("{count}: {text}")).await?;
        Ok(())
    });
    on_close(|| println!("{count} messages"));
    Ok(())
}

fn main() {}
