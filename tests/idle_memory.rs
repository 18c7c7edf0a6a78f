//! What an idle connection costs the server in heap: a counting allocator sums the bytes the
//! server's thread holds, before and after a thousand clients connected and each had one
//! message echoed (so every connection's task ran and its buffers took their shape).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use wsock::prelude::*;

/// The system allocator, counting the bytes that the threads which ask to be counted hold.
struct Counting;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Bytes allocated and not freed by counted threads.
static HELD: AtomicI64 = AtomicI64::new(0);
/// Blocks allocated and not freed by counted threads.
static BLOCKS: AtomicI64 = AtomicI64::new(0);

fn count(bytes: usize, blocks: i64) {
    if COUNTED.with(Cell::get) {
        HELD.fetch_add(bytes as i64 * blocks, Ordering::Relaxed);
        BLOCKS.fetch_add(blocks, Ordering::Relaxed);
    }
}

// SAFETY: every call is handed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

const CONNECTIONS: usize = 1000;

/// The heap an idle connection holds, in bytes, including tokio's task and its socket's
/// registration (the bench's RSS figure adds the allocator's own overhead to this).
const MAX_BYTES_PER_CONNECTION: f64 = 1450.0;

#[test]
fn an_idle_connection_holds_little_heap() {
    // The server runs on a thread of its own, whose allocations are counted.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            COUNTED.with(|counted| counted.set(true));
            let bound = Server::new().route(echo).bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(bound.local_addr()).unwrap();
            tokio::select! {
                served = bound.run() => served.unwrap(),
                _ = stop_rx => {}
            }
            COUNTED.with(|counted| counted.set(false));
        });
    });
    let addr = addr_rx
        .recv_timeout(WAIT)
        .expect("the server did not start");

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bytes, blocks) = client.block_on(async {
        async fn open(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
            let mut stream = raw_upgrade(addr, "/echo").await;
            stream.write_all(&raw_frame(0x81, b"hello")).await.unwrap();
            let (first, payload) = raw_read_frame(&mut stream).await;
            assert_eq!((first, payload.as_slice()), (0x81, &b"hello"[..]));
            stream
        }
        // One connection first: the server's one-time allocations are made by then.
        let first = open(addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (held, blocks) = (HELD.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed));
        let mut streams = vec![first];
        for _ in 0..CONNECTIONS {
            streams.push(open(addr).await);
        }
        // The last echo came back: every connection is idle, waiting for its next message.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let per = |now: i64, then: i64| (now - then) as f64 / CONNECTIONS as f64;
        let bytes = per(HELD.load(Ordering::Relaxed), held);
        let blocks = per(BLOCKS.load(Ordering::Relaxed), blocks);
        drop(streams);
        (bytes, blocks)
    });
    let _ = stop_tx.send(());
    server.join().unwrap();
    eprintln!("an idle connection holds {bytes:.0} bytes in {blocks:.1} blocks");
    assert!(
        bytes <= MAX_BYTES_PER_CONNECTION,
        "an idle connection holds {bytes:.0} bytes in {blocks:.1} blocks"
    );
}
