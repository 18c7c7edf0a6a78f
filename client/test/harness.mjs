// What the client's tests share: the test server (tests/clients/server.rs, the example
// `client-test-server`, whose path is in WSOCK_TEST_SERVER), started on a free port or on a
// given one (to restart it where it was), and waits with a timeout.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

const binary = process.env.WSOCK_TEST_SERVER;
if (!binary) throw new Error("WSOCK_TEST_SERVER must name the test server's binary (see tests/clients.rs)");

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts the test server on `port` (0: a free one); `heartbeat` in ms turns heartbeats on;
 * `history`: the messages a resumable topic keeps (and one resume replays at most); `redis`: a
 * Redis URL, to share topics and their history with the other servers given it. */
export async function startServer({ port = 0, heartbeat, history, redis } = {}) {
  const args = [`127.0.0.1:${port}`];
  if (heartbeat) args.push(String(heartbeat));
  if (history) args.push("--history", String(history));
  if (redis) args.push("--redis", redis);
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "inherit"] });
  running.add(child);
  const exited = once(child, "exit").then(() => running.delete(child));
  const lines = createInterface({ input: child.stdout });
  const addr = await within(10_000, "the test server's address", new Promise((found, failed) => {
    lines.on("line", (line) => {
      const match = /listening addr=(\S+)/.exec(line);
      if (match) found(match[1]);
    });
    child.on("exit", (code) => failed(new Error(`the test server exited (${code}) before listening`)));
  }));
  const [, portText] = addr.split(":");
  return {
    port: Number(portText),
    url: (path) => `ws://${addr}${path}`,
    /** Kills it (SIGKILL: connections vanish without a close) and waits for it to exit. */
    async kill(signal = "SIGKILL") {
      child.kill(signal);
      await exited;
    },
  };
}

/** Starts Debian's `redis-server` on a free port, in a directory of its own, without
 * persistence; `stop()` kills it and removes the directory. */
export async function startRedis() {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const net = await import("node:net");
  const free = net.createServer();
  await new Promise((ready) => free.listen(0, "127.0.0.1", ready));
  const port = free.address().port;
  await new Promise((closed) => free.close(closed));
  const dir = await mkdtemp(join(tmpdir(), "wsock-client-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  const child = spawn("redis-server", args, { stdio: "ignore" });
  running.add(child);
  const exited = once(child, "exit").then(() => running.delete(child));
  await within(10_000, "redis-server listening", (async () => {
    for (;;) {
      const up = await new Promise((answered) => {
        const socket = net.connect(port, "127.0.0.1", () => {
          socket.destroy();
          answered(true);
        });
        socket.on("error", () => answered(false));
      });
      if (up) return;
      await sleep(20);
    }
  })());
  return {
    url: `redis://127.0.0.1:${port}/`,
    async stop() {
      child.kill("SIGKILL");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `promise`, or a failure naming `what` after `ms`. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, failed) => {
    timer = setTimeout(() => failed(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next `type` event of `client` (for which `accept` holds), within `ms`. */
export function next(client, type, ms = 10_000, accept = () => true) {
  let stop;
  const event = new Promise((found) => {
    stop = client.on(type, (event) => {
      if (accept(event)) found(event);
    });
  });
  return within(ms, `a ${type} event`, event).finally(() => stop());
}

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** A socket that opens at once and delivers the frames a test gives it. */
export class Scripted {
  static all = [];
  protocol = "";
  extensions = "";
  binaryType = "blob";
  onopen = null;
  onmessage = null;
  onerror = null;
  onclose = null;
  constructor(url) {
    this.url = url;
    Scripted.all.push(this);
    setTimeout(() => this.onopen?.({}));
  }
  send() {}
  close() {}
  frame(data) {
    this.onmessage({ data });
  }
  drop() {
    this.onclose({ code: 1006, reason: "", wasClean: false });
  }
}
