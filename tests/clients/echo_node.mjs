// Node's `ws` against wsock's echo example: text, binary, 1 MiB messages, ping, close codes,
// with permessage-deflate offered and checked as negotiated (large JSON both ways).
// Usage: node echo_node.mjs ws://127.0.0.1:PORT/
//
// Prints one line per step; `READY shutdown` asks the test to stop the server (Ctrl-C), after
// which the open connection must get 1001. Exits non-zero on the first failure.

import { randomBytes } from "node:crypto";
import assert from "node:assert/strict";
import WebSocket from "ws";

const TIMEOUT = 10_000;
const MIB = 1 << 20;
const url = process.argv[2];

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A connection whose messages and close are read in order, as promises. */
async function open() {
  // ws compresses messages of 1 KiB or more once permessage-deflate is agreed.
  const ws = new WebSocket(url, { maxPayload: 4 * MIB, perMessageDeflate: true });
  const queue = [];
  const waiting = [];
  let closed = null;
  const deliver = (item) => (waiting.length ? waiting.shift()(item) : queue.push(item));
  ws.on("message", (data, isBinary) => deliver({ data, isBinary }));
  ws.on("close", (code, reason) => {
    closed = { code, reason: reason.toString() };
    while (waiting.length) waiting.shift()({ closed });
  });
  await within(new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  }), "the connection");
  const next = (what) => within(new Promise((resolve) => {
    if (queue.length) resolve(queue.shift());
    else if (closed) resolve({ closed });
    else waiting.push(resolve);
  }), what);
  const whenClosed = () => within(new Promise((resolve) => {
    if (closed) resolve(closed);
    else ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() }));
  }), "the close");
  return { ws, next, whenClosed };
}

const { ws, next, whenClosed } = await open();

assert.match(ws.extensions, /^permessage-deflate/, `negotiated: ${JSON.stringify(ws.extensions)}`);
console.log(`ok negotiated ${ws.extensions}`);
const json = JSON.stringify(
  Array.from({ length: 400 }, (_, i) => ({ id: i, user: `user${i % 7}`, text: `hello number ${i}` })),
);
ws.send(json);
let compressed = await next("the JSON echo");
assert.equal(compressed.data.toString(), json);
console.log(`ok ${json.length} bytes of JSON, compressed both ways`);

ws.send("hello from node");
let echo = await next("the text echo");
assert.equal(echo.isBinary, false);
assert.equal(echo.data.toString(), "hello from node");
console.log("ok text");

ws.send(Buffer.from([0, 1, 0xfe, 0xff]));
echo = await next("the binary echo");
assert.equal(echo.isBinary, true);
assert.deepEqual([...echo.data], [0, 1, 0xfe, 0xff]);
console.log("ok binary");

const big = randomBytes(MIB);
ws.send(big);
echo = await next("the 1 MiB binary echo");
assert.equal(echo.isBinary, true);
assert.ok(big.equals(echo.data), "1 MiB binary comes back unchanged");
const text = "é".repeat(MIB / 2);
ws.send(text);
echo = await next("the 1 MiB text echo");
assert.equal(echo.isBinary, false);
assert.equal(echo.data.toString(), text);
console.log("ok 1 MiB binary and text");

const started = process.hrtime.bigint();
const pong = within(new Promise((resolve) => ws.once("pong", resolve)), "the pong");
ws.ping(Buffer.from("wsock"));
assert.equal((await pong).toString(), "wsock", "the pong carries the ping's payload");
console.log(`ok ping answered in ${Number(process.hrtime.bigint() - started) / 1e6} ms`);

for (let i = 0; i < 200; i++) ws.send(`m${i}`);
for (let i = 0; i < 200; i++) {
  assert.equal((await next(`message ${i}`)).data.toString(), `m${i}`);
}
console.log("ok 200 messages in order");

ws.close(4000, "done");
let close = await whenClosed();
assert.equal(close.code, 4000, "the close code is echoed");
assert.equal(close.reason, "done", "the close reason is echoed");
console.log("ok close 4000 echoed");

const second = await open();
second.ws.close(1000);
close = await second.whenClosed();
assert.equal(close.code, 1000);
console.log("ok close 1000");

const third = await open();
third.ws.send("before shutdown");
assert.equal((await third.next("the echo")).data.toString(), "before shutdown");
console.log("READY shutdown");
close = await third.whenClosed();
assert.equal(close.code, 1001, "a server shutdown is 1001, going away");
console.log("ok shutdown gives 1001");
console.log("all node checks passed");
