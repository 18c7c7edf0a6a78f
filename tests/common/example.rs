//! The example binaries, started as a newcomer runs them: on 127.0.0.1:0, with the address
//! read from their log. `cargo test` builds the examples first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::{Client, connect_with};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Example {
    name: String,
    pub child: Child,
    pub lines: tokio::io::Lines<BufReader<ChildStdout>>,
    pub addr: SocketAddr,
    /// What the example printed before it listened.
    pub banner: Vec<String>,
}

/// `target/<profile>/examples/<name>`, built by `cargo test`.
pub fn binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let binary = deps.parent().unwrap().join("examples").join(name);
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test`",
        binary.display()
    );
    binary
}

impl Example {
    /// Starts `target/<profile>/examples/<name> 127.0.0.1:0` and waits for its address.
    pub async fn start(name: &str) -> Example {
        Example::start_with(name, &[]).await
    }

    /// Starts `target/<profile>/examples/<name> 127.0.0.1:0 <args>..` and waits for its
    /// address.
    pub async fn start_with(name: &str, args: &[&std::ffi::OsStr]) -> Example {
        Example::start_at(name, "127.0.0.1:0", args).await
    }

    /// Starts `target/<profile>/examples/<name> <addr> <args>..` and waits for its address.
    pub async fn start_at(name: &str, addr: &str, args: &[&std::ffi::OsStr]) -> Example {
        let binary = binary(name);
        let mut child = Command::new(&binary)
            .arg(addr)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        let addr = loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("the example did not log its address in time")
                .unwrap()
                .expect("the example exited before listening");
            match line.split("listening addr=").nth(1) {
                Some(addr) => break addr.trim().parse().expect("a socket address"),
                None => banner.push(line),
            }
        };
        Example {
            name: name.to_owned(),
            child,
            lines,
            addr,
            banner,
        }
    }

    /// Waits for a line of output that contains `text`.
    pub async fn expect_output(&mut self, text: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if line.contains(text) {
                    return;
                }
            }
            panic!("the example exited without printing {text:?}");
        });
        found
            .await
            .unwrap_or_else(|_| panic!("the example never printed {text:?}"));
    }

    pub async fn connect(&self, path: &str) -> Client {
        connect_with(self.addr, path, &[]).await
    }

    pub async fn stop(mut self) {
        self.child.kill().await.ok();
    }

    /// Kills the example (SIGKILL: its connections vanish without a close frame) and starts
    /// it again on the same address, with `args`.
    pub async fn restart(&mut self, args: &[&std::ffi::OsStr]) {
        self.child.kill().await.ok();
        let name = self.name.clone();
        *self = Example::start_at(&name, &self.addr.to_string(), args).await;
    }

    /// Sends SIGINT (Ctrl-C), as a user stopping the example does.
    pub fn interrupt(&self) {
        let pid = self.child.id().expect("the example runs");
        let pid = libc::pid_t::try_from(pid).expect("a process id");
        // SAFETY: kill(2) on our own child's pid (positive: that process only).
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0, "SIGINT: {}", std::io::Error::last_os_error());
    }

    /// Waits for the example to exit and returns whether it exited cleanly.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the example did not exit in time")
            .unwrap()
    }
}
