// Presence: the client keeps the list of a presence its endpoint watches (`Presence::watch`),
// from the frames the server sends, and says who came and went, right across reconnects.
// Against scripted frames, and against the test server's `/presence/{room}` through the
// fault proxy. Run by tests/clients.rs:
//   WSOCK_TEST_SERVER=<binary> node --experimental-websocket --test test/presence.test.mjs

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { connect } from "../dist/index.js";
import { startProxy } from "./proxy.mjs";
import { Scripted, next, sleep, startServer } from "./harness.mjs";

const T = { timeout: 30_000 };
const RS = "\x1e";
const frame = (fields) => `${RS}${JSON.stringify(fields)}${RS}`;
const member = (key, name = key, connections = 1) => ({ key, meta: { name }, connections });
const keys = (members) => members.map((m) => m.key).sort();

const running = { clients: new Set(), proxies: new Set(), servers: new Set() };
afterEach(async () => {
  for (const client of running.clients) client.close();
  await Promise.all([...running.proxies].map((proxy) => proxy.close()));
  await Promise.all([...running.servers].map((server) => server.kill()));
  for (const set of Object.values(running)) set.clear();
});

function open(url, options = {}) {
  const client = connect(url, { reconnect: { initialDelay: 20, maxDelay: 50 }, ...options });
  running.clients.add(client);
  const changes = [];
  client.on("presence", (change) => changes.push(change));
  return { client, changes };
}

test("presence frames, scripted: the list, changes, a long list in parts, counts", T, async () => {
  Scripted.all = [];
  const { client, changes } = open("ws://127.0.0.1:9/room", { WebSocket: Scripted, probe: false, heartbeat: 60_000 });
  const messages = [];
  client.on("message", (message) => messages.push(message));
  await next(client, "open");
  const ws = Scripted.all[0];
  ws.frame(frame({ presence: "lobby", state: [member("ann"), member("bob")] }));
  ws.frame(frame({ presence: "lobby", join: [member("cy"), member("ann", "Ann", 2)], leave: ["bob"] }));
  assert.deepEqual(keys(client.members("lobby")), ["ann", "cy"]);
  assert.equal(client.count("lobby"), 2);
  assert.deepEqual(changes[0].joined.map((m) => m.key), ["ann", "bob"]);
  assert.deepEqual(changes[1], {
    topic: "lobby",
    joined: [member("cy")],
    left: [member("bob")],
    updated: [member("ann", "Ann", 2)],
  });
  // A long list in parts is applied whole, with the last.
  ws.frame(frame({ presence: "hall", more: true, state: [member("a"), member("b")] }));
  assert.deepEqual(client.members("hall"), []);
  ws.frame(frame({ presence: "hall", state: [member("c")] }));
  assert.deepEqual(keys(client.members("hall")), ["a", "b", "c"]);
  assert.deepEqual(changes.at(-1).joined.map((m) => m.key), ["a", "b", "c"]);
  // Counts only.
  ws.frame(frame({ presence: "arena", count: 12000 }));
  assert.equal(client.count("arena"), 12000);
  assert.deepEqual(changes.at(-1), { topic: "arena", joined: [], left: [], updated: [], count: 12000 });
  // None of it is a message; a copy is a copy.
  assert.deepEqual(messages, []);
  client.members("lobby")[0].key = "changed";
  assert.deepEqual(keys(client.members("lobby")), ["ann", "cy"]);
});

test("against the server: who comes and goes, and after a reconnect what changed meanwhile", T, async () => {
  const server = await startServer();
  running.servers.add(server);
  const proxy = await startProxy(server.port);
  running.proxies.add(proxy);
  const { client, changes } = open(`ws://127.0.0.1:${proxy.port}/presence/lobby?watch`);
  await next(client, "presence");
  assert.deepEqual(client.members("lobby"), []);
  const ann = open(server.url("/presence/lobby?name=ann"), { reconnect: false }).client;
  const joined = await next(client, "presence", 5_000, (c) => c.joined.length > 0);
  assert.deepEqual(joined.joined, [member("ann")]);
  const bob = open(server.url("/presence/lobby?name=bob"), { reconnect: false }).client;
  await next(client, "presence", 5_000, (c) => c.joined.some((m) => m.key === "bob"));

  // Cut off: meanwhile ann goes and cy comes. Back, the client's list is right, and it says so.
  proxy.stall();
  proxy.cut();
  await next(client, "close");
  ann.close();
  const cy = open(server.url("/presence/lobby?name=cy"), { reconnect: false }).client;
  await next(cy, "open");
  await sleep(300);
  const back = next(client, "presence", 5_000, (c) => c.left.length > 0 || c.joined.length > 0);
  proxy.forward();
  proxy.cut();
  const change = await back;
  assert.deepEqual(change.left, [member("ann")]);
  assert.deepEqual(change.joined, [member("cy")]);
  assert.deepEqual(keys(client.members("lobby")), ["bob", "cy"]);
  bob.close();
  await next(client, "presence", 5_000, (c) => c.left.some((m) => m.key === "bob"));
  assert.deepEqual(keys(client.members("lobby")), ["cy"]);
  assert.ok(changes.length >= 4);
});
