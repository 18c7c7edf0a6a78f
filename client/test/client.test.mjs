// The client against real wsock servers (tests/clients/server.rs), through the fault proxy
// where the network must misbehave. Run by tests/clients.rs:
//   WSOCK_TEST_SERVER=<binary> node --experimental-websocket --test test/*.test.mjs
// (Node 22 and later have the global WebSocket without the flag.)

import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, retryable } from "../dist/index.js";
import { startProxy } from "./proxy.mjs";
import { next, sleep, startServer, within } from "./harness.mjs";

const T = { timeout: 30_000 };

test("typed JSON, text and binary round trips; a message that does not parse is an error event", T, async () => {
  const server = await startServer();
  const json = connect(server.url("/json"));
  json.send({ n: 1, list: [true, "two"] });
  const reply = await next(json, "message");
  assert.deepEqual(reply, { echo: { n: 1, list: [true, "two"] } });
  assert.equal(json.state, "open");
  json.close();

  const text = connect(server.url("/echo"), { format: "text" });
  text.send("plain text, not JSON");
  assert.equal(await next(text, "message"), "plain text, not JSON");
  text.close();

  const binary = connect(server.url("/echo"), { format: "binary" });
  binary.send(new Uint8Array([0, 1, 254, 255]));
  const bytes = await next(binary, "message");
  assert.ok(bytes instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(bytes)], [0, 1, 254, 255]);
  binary.close();

  // Not JSON: reported with the raw data, never given to the message listeners, and the
  // connection goes on.
  const garbage = connect(server.url("/garbage"));
  const seen = [];
  garbage.on("message", (message) => seen.push(message));
  const error = await next(garbage, "error");
  assert.equal(error.data, "not json");
  assert.match(error.message, /not JSON/);
  await within(5000, "the message after the garbage", (async () => {
    while (seen.length === 0) await sleep(10);
  })());
  assert.deepEqual(seen, [{ after: "garbage" }]);
  garbage.close();
  await server.kill();
});

test("reconnects after the server is killed and restarted on the same port", T, async () => {
  let server = await startServer();
  const client = connect(server.url("/echo"), { format: "text", reconnect: { initialDelay: 100, maxDelay: 400 } });
  await next(client, "open");
  client.send("before");
  assert.equal(await next(client, "message"), "before");

  const lost = next(client, "close");
  const retry = next(client, "reconnecting");
  await server.kill();
  const close = await lost;
  assert.equal(close.code, 1006);
  assert.equal(close.wasOpen, true);
  assert.equal(close.willRetry, true);
  const retrying = await retry;
  assert.ok(retrying.attempt >= 1);
  assert.equal(client.state, "reconnecting");
  await sleep(500); // a few failed attempts against the closed port

  const back = next(client, "reconnected");
  server = await startServer({ port: server.port });
  const reconnected = await back;
  assert.ok(reconnected.attempts >= 1, JSON.stringify(reconnected));
  client.send("after");
  assert.equal(await next(client, "message"), "after");
  console.log(`# reconnected after ${reconnected.attempts} attempts`);
  client.close();
  await server.kill();
});

test("going back online retries at once, cutting the backoff's wait short", T, async () => {
  // Node has no window: an event target stands in for the page's global `online` event.
  const page = new EventTarget();
  const saved = [globalThis.addEventListener, globalThis.removeEventListener, Math.random];
  globalThis.addEventListener = page.addEventListener.bind(page);
  globalThis.removeEventListener = page.removeEventListener.bind(page);
  Math.random = () => 0.99; // every retry waits 99% of its cap: a minute here
  try {
    let server = await startServer();
    const client = connect(server.url("/echo"), { format: "text", reconnect: { initialDelay: 60_000, maxDelay: 60_000 } });
    await next(client, "open");
    const retry = next(client, "reconnecting");
    await server.kill();
    const waiting = await retry;
    assert.ok(waiting.delay > 50_000, JSON.stringify(waiting));
    server = await startServer({ port: server.port });
    const back = next(client, "reconnected", 3_000);
    const cameBack = Date.now();
    page.dispatchEvent(new Event("online"));
    await back;
    const took = Date.now() - cameBack;
    assert.ok(took < 2_000, `reconnected ${took} ms after the online event`);
    client.send("after");
    assert.equal(await next(client, "message"), "after");
    console.log(`# back online: reconnected in ${took} ms, not after the ${waiting.delay} ms wait`);
    client.close();
    await server.kill();
  } finally {
    [globalThis.addEventListener, globalThis.removeEventListener, Math.random] = saved;
  }
});

test("backoff: delays within their exponential caps, jittered across clients", T, async () => {
  const server = await startServer();
  const initialDelay = 200;
  const maxDelay = 800;
  const clients = Array.from({ length: 20 }, () =>
    connect(server.url("/echo"), { format: "text", reconnect: { initialDelay, maxDelay } }),
  );
  await Promise.all(clients.map((client) => next(client, "open")));
  const delays = clients.map(() => []);
  let done = false;
  const gaps = clients.map(() => []);
  clients.forEach((client, i) => {
    let scheduled = 0;
    client.on("reconnecting", ({ attempt, delay }) => {
      delays[i].push({ attempt, delay });
      scheduled = performance.now();
    });
    // The next attempt fails (nobody listens): it came no earlier than its delay.
    client.on("close", () => {
      if (scheduled && !done) gaps[i].push({ delay: delays[i].at(-1).delay, waited: performance.now() - scheduled });
    });
  });
  await server.kill();
  await sleep(3000);
  done = true;
  for (const client of clients) client.close();

  for (const list of delays) {
    assert.ok(list.length >= 3, `at least three attempts in 3 s: ${JSON.stringify(list)}`);
    list.forEach(({ attempt, delay }, k) => {
      assert.equal(attempt, k + 1);
      const cap = Math.min(maxDelay, initialDelay * 2 ** (attempt - 1));
      assert.ok(delay >= 0 && delay <= cap, `attempt ${attempt}: ${delay} ms, cap ${cap}`);
    });
  }
  for (const { delay, waited } of gaps.flat()) {
    assert.ok(waited >= delay - 5, `waited ${waited.toFixed(0)} ms for a delay of ${delay}`);
  }
  // Jitter: the first retries of 20 clients dropped at once are spread over their window.
  const first = delays.map((list) => list[0].delay).sort((a, b) => a - b);
  const spread = first.at(-1) - first[0];
  const distinct = new Set(first).size;
  assert.ok(spread >= initialDelay / 2, `first delays spread over ${spread} ms only: ${first}`);
  assert.ok(distinct >= 10, `only ${distinct} distinct first delays: ${first}`);
  const third = delays.map((list) => list[2].delay);
  console.log(`# first retry delays (ms): ${first.join(" ")}`);
  console.log(`# third retry delays (ms, cap ${Math.min(maxDelay, initialDelay * 4)}): ${third.join(" ")}`);
});

test("missing heartbeats are noticed through a proxy that stops forwarding without closing", T, async () => {
  const server = await startServer({ heartbeat: 100 });
  const proxy = await startProxy(server.port);
  const client = connect(`ws://127.0.0.1:${proxy.port}/echo`, {
    format: "text",
    heartbeat: 600,
    reconnect: { initialDelay: 100, maxDelay: 200 },
  });
  const messages = [];
  client.on("message", (message) => messages.push(message));
  await next(client, "open");
  await sleep(1000);
  assert.deepEqual(messages, [], "heartbeats are never messages");
  assert.equal(client.state, "open", "heartbeats kept the connection alive");

  const stalled = performance.now();
  proxy.stall();
  const close = await next(client, "close", 5000);
  const noticed = performance.now() - stalled;
  assert.equal(close.code, 1006);
  assert.match(close.reason, /no heartbeat for 600 ms/);
  assert.equal(close.willRetry, true);
  assert.ok(noticed >= 400 && noticed < 2000, `noticed after ${noticed.toFixed(0)} ms`);

  proxy.forward();
  await next(client, "reconnected", 10_000);
  client.send("through again");
  assert.equal(await next(client, "message"), "through again");
  console.log(`# a stalled connection noticed after ${noticed.toFixed(0)} ms (heartbeat 100 ms, timeout 600 ms)`);

  // Without the option, the same stall goes unnoticed: the connection stays "open".
  const blind = connect(`ws://127.0.0.1:${proxy.port}/echo`, { format: "raw" });
  const blindMessages = [];
  blind.on("message", (message) => blindMessages.push(message));
  await next(blind, "open");
  await sleep(300);
  assert.ok(blindMessages.includes(""), "a client without the option sees empty text messages");
  proxy.stall();
  await sleep(1200);
  assert.equal(blind.state, "open");
  blind.close();
  client.close();
  await proxy.close();
  await server.kill();
});

test("the fault proxy: a reset is a lost connection, a delay only slows", T, async () => {
  const server = await startServer();
  const proxy = await startProxy(server.port);
  const client = connect(`ws://127.0.0.1:${proxy.port}/echo`, {
    format: "text",
    reconnect: { initialDelay: 50, maxDelay: 100 },
  });
  await next(client, "open");
  const lost = next(client, "close");
  proxy.cut();
  assert.equal((await lost).code, 1006);
  await next(client, "reconnected");

  proxy.delay(200);
  const sent = performance.now();
  client.send("slow");
  assert.equal(await next(client, "message"), "slow");
  const took = performance.now() - sent;
  assert.ok(took >= 380, `a round trip through a 200 ms delay took ${took.toFixed(0)} ms`);
  assert.equal(client.state, "open");
  client.close();
  await proxy.close();
  await server.kill();
});

test("sends while disconnected are queued and delivered in order; past the bound they are refused", T, async () => {
  let server = await startServer();
  const client = connect(server.url("/echo"), { format: "text", queue: 50, reconnect: { initialDelay: 50, maxDelay: 100 } });
  const received = [];
  client.on("message", (message) => received.push(message));
  await next(client, "open");
  const lost = next(client, "close");
  await server.kill();
  await lost;

  for (let i = 1; i <= 50; i++) assert.equal(client.send(`m${i}`), true);
  const refused = next(client, "error");
  assert.equal(client.send("one too many"), false);
  assert.match((await refused).message, /50 messages wait already/);

  server = await startServer({ port: server.port });
  await next(client, "reconnected");
  await within(10_000, "50 echoes", (async () => {
    while (received.length < 50) await sleep(10);
  })());
  assert.deepEqual(received, Array.from({ length: 50 }, (_, i) => `m${i + 1}`));
  client.close();

  // With no queue, a send while not connected is refused at once.
  const strict = connect(server.url("/echo"), { format: "text", queue: 0 });
  assert.equal(strict.send("too early"), false);
  await next(strict, "open");
  assert.equal(strict.send("now"), true);
  assert.equal(await next(strict, "message"), "now");
  strict.close();
  await server.kill();
});

test("no retry after a normal close (1000), a policy close (1008) or a 403 refusal", T, async () => {
  const server = await startServer();
  for (const [path, code] of [["/bye", 1000], ["/policy", 1008]]) {
    const client = connect(server.url(path), { reconnect: { initialDelay: 10 } });
    let retried = false;
    client.on("reconnecting", () => (retried = true));
    const close = await next(client, "close");
    assert.equal(close.code, code, path);
    assert.equal(close.wasOpen, true);
    assert.equal(close.willRetry, false, path);
    await sleep(300);
    assert.equal(retried, false, path);
    assert.equal(client.state, "closed");
  }

  const refused = connect(server.url("/forbidden"), { reconnect: { initialDelay: 10 } });
  let retried = false;
  refused.on("reconnecting", () => (retried = true));
  const close = await next(refused, "close");
  assert.equal(close.wasOpen, false);
  assert.deepEqual(close.refusal, { status: 403, statusText: "Forbidden", body: "not for you" });
  assert.equal(close.willRetry, false);
  await sleep(300);
  assert.equal(retried, false);
  assert.equal(refused.state, "closed");

  // Unless the user says otherwise.
  const stubborn = connect(server.url("/bye"), {
    reconnect: { initialDelay: 10, maxDelay: 20, retryOn: () => true, maxAttempts: 2 },
  });
  const attempts = [];
  stubborn.on("reconnecting", ({ attempt }) => attempts.push(attempt));
  await next(stubborn, "close", 10_000, (close) => !close.willRetry);
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(stubborn.state, "closed");

  assert.equal(retryable({ code: 1001 }), true);
  assert.equal(retryable({ code: 1006, refusal: { status: 503 } }), true);
  assert.equal(retryable({ code: 1006, refusal: { status: 401 } }), false);
  await server.kill();
});

test("close() stops for good, and a send after it is refused", T, async () => {
  const server = await startServer();
  const client = connect(server.url("/echo"), { format: "text" });
  await next(client, "open");
  const closed = next(client, "close");
  client.close(1000, "done");
  const close = await closed;
  assert.equal(close.code, 1000);
  assert.equal(close.willRetry, false);
  assert.equal(client.state, "closed");
  assert.equal(client.send("late"), false);
  await server.kill();
});
