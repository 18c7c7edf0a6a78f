use wsock::prelude::*;

// Inserting into the session an endpoint received would change no cookie.
#[websocket("/visit")]
fn visit(mut session: Session, out: Out<String>) { //~ ERROR remove `mut`
    session.insert("visited", "yes");
    out.write("welcome".to_owned());
}

fn main() {}
