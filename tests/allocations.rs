//! A synchronous section's messages cost the server no heap allocation: a counting allocator
//! counts what the server's thread allocates while a client has thousands of messages echoed
//! (text and binary, one at a time and in bursts), after a warm-up that lets the buffers
//! reach their size.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use tokio::io::AsyncWriteExt;
use wsock::prelude::*;

/// The system allocator, counting the allocations of the threads that ask to be counted.
struct Counting;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Allocations made by counted threads.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is handed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[websocket("/echo")]
fn echo(out: Out<Message>) {
    on_message(|message: Message| out.write(message));
}

/// Echoes `rounds` bursts of `burst` messages on `stream`, checking each reply.
async fn echo_bursts(stream: &mut tokio::net::TcpStream, rounds: usize, burst: usize) {
    for round in 0..rounds {
        let mut frames = Vec::new();
        for i in 0..burst {
            let (first, text) = if i % 2 == 0 {
                (0x81, "a text message of some length")
            } else {
                (0x82, "binary")
            };
            frames.extend(raw_frame(first, format!("{text} {round} {i}").as_bytes()));
        }
        stream.write_all(&frames).await.unwrap();
        for i in 0..burst {
            let (first, payload) = raw_read_frame(stream).await;
            let text = if i % 2 == 0 {
                "a text message of some length"
            } else {
                "binary"
            };
            assert_eq!(
                (first, String::from_utf8(payload).unwrap()),
                (
                    if i % 2 == 0 { 0x81 } else { 0x82 },
                    format!("{text} {round} {i}")
                )
            );
        }
    }
}

#[test]
fn echoing_through_a_synchronous_section_allocates_nothing() {
    // The server runs on a thread of its own, whose allocations are counted.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let bound = Server::new().route(echo).bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(bound.local_addr()).unwrap();
            COUNTED.with(|counted| counted.set(true));
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
    let (before, after, messages) = client.block_on(async {
        let mut stream = raw_upgrade(addr, "/echo").await;
        // Warm-up: the connection's and the thread's buffers reach their size.
        echo_bursts(&mut stream, 50, 16).await;
        echo_bursts(&mut stream, 200, 1).await;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        echo_bursts(&mut stream, 250, 16).await;
        echo_bursts(&mut stream, 1000, 1).await;
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        (before, after, 250 * 16 + 1000)
    });
    let _ = stop_tx.send(());
    server.join().unwrap();
    let allocations = after - before;
    eprintln!("{allocations} allocations for {messages} echoed messages");
    // No allocation per message: a handful at most, whatever the count (a buffer that grows
    // once more, a timer entry).
    assert!(
        allocations <= 16,
        "{allocations} allocations for {messages} echoed messages"
    );
}
