use wsock::prelude::*;

struct Chat;

impl Chat {
    #[websocket("/")]
    fn chat(&self, out: Out<String>) { //~ ERROR cannot take `self`
        out.write("hi");
    }
}

fn main() {}
