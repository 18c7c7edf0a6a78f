//! A `redis-server` of the test's own (Debian's package): shared by the facade's tests and
//! wsock-redis's (`#[path]`), so both start and stop it the same way.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(15);

/// A `redis-server` of the test's own, on a free port, in a temporary directory; killed
/// (and the directory removed) when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one, or returns `None` (after saying why) when `redis-server` is missing:
    /// under `CI=true` that is a failure.
    pub async fn start(test: &str) -> Option<RedisServer> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            let why = "redis-server is missing (Debian: `apt-get install redis-server`; \
                       `.ci/run` installs it)";
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("{test}: {why}");
            }
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {why}.");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("wsock-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = RedisServer {
            child: None,
            port,
            dir,
        };
        redis.run().await;
        Some(redis)
    }

    /// (Re)starts the server on its port, and waits until it answers.
    pub async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // `DEBUG SLEEP`: Redis asleep, for the tests of a slow Redis.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        tokio::time::timeout(WAIT, async {
            while TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("redis-server did not start listening");
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Drops every connection in subscribe mode (`CLIENT KILL TYPE pubsub`), as a network
    /// blip would, and returns how many there were.
    pub async fn kill_pubsub_clients(&self) -> usize {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream
            .write_all(b"*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$4\r\nTYPE\r\n$6\r\npubsub\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n") {
            let mut byte = [0u8; 64];
            let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
                .await
                .expect("Redis answers CLIENT KILL")
                .unwrap();
            assert!(read > 0, "Redis closed the connection");
            answer.extend_from_slice(&byte[..read]);
        }
        let answer = String::from_utf8_lossy(&answer);
        answer
            .strip_prefix(':')
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("CLIENT KILL answered {answer}"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
