// Resume: the client against the test server's `resume = true` endpoint (`/feed/{name}`, the
// topic `feed:{name}`), with `/publish/{name}` publishing to it, through the fault proxy.
// Run by tests/clients.rs:
//   WSOCK_TEST_SERVER=<binary> node --experimental-websocket --test test/resume.test.mjs

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { connect } from "../dist/index.js";
import { startProxy } from "./proxy.mjs";
import { Scripted, next, sleep, startRedis, startServer } from "./harness.mjs";

const T = { timeout: 30_000 };
const RS = "\x1e";

// What a test started, stopped after it, passed or failed: a client left reconnecting, or a
// publisher left publishing, would keep the process running.
const running = { clients: new Set(), proxies: new Set(), servers: new Set(), redises: new Set() };
afterEach(async () => {
  const { clients, proxies, servers, redises } = running;
  for (const client of clients) client.close();
  await Promise.all([...proxies].map((proxy) => proxy.close()));
  await Promise.all([...servers].map((server) => server.kill()));
  await Promise.all([...redises].map((redis) => redis.stop()));
  for (const set of [clients, proxies, servers, redises]) set.clear();
});

async function serve(options) {
  const server = await startServer(options);
  running.servers.add(server);
  return server;
}

/** A proxy to `server`, or to each of `servers` in turn (every reconnect on the next). */
async function proxyTo(server) {
  const proxy = await startProxy(Array.isArray(server) ? server.map((s) => s.port) : server.port);
  running.proxies.add(proxy);
  return proxy;
}

function open(url, options) {
  const client = connect(url, options);
  running.clients.add(client);
  return client;
}

/** Resolves once `done()` holds, checking every 5 ms; fails after `ms`, saying `what` (a
 * string, or a function that says how far it got). */
async function until(ms, what, done) {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await sleep(5);
  }
}

/** Publishes `count` messages (the JSON numbers 1, 2, ..) to `feed:{name}`, one every `every`
 * ms; resolves with how many were published. */
async function publish(server, name, count, every = 0) {
  const publisher = open(server.url(`/publish/${name}?count=${count}&every=${every}`), { reconnect: false });
  const published = await next(publisher, "message", 20_000);
  publisher.close();
  return published;
}

/** Publishes one message every `every` ms to `feed:{name}` until `stop()`, which resolves with
 * how many were published. */
async function publishing(server, name, every) {
  const publisher = open(server.url(`/publish/${name}?every=${every}`), { reconnect: false });
  await next(publisher, "open");
  return {
    async stop() {
      const published = next(publisher, "message");
      publisher.send("stop");
      const count = await published;
      publisher.close();
      return count;
    },
  };
}

/** Cuts a client off for a while: its connection is reset and its next attempts stall (the
 * proxy forwards nothing) until `back()`, which resets the stalled attempts too. */
function away(proxy) {
  proxy.stall();
  proxy.cut();
  return {
    back() {
      proxy.forward();
      proxy.cut();
    },
  };
}

/** A client that records its `message`, `subscribed` and `gap` events. */
function recording(url, options = {}) {
  const client = open(url, { reconnect: { initialDelay: 20, maxDelay: 50 }, ...options });
  const seen = { messages: [], subscribed: [], gaps: [] };
  client.on("message", (message) => seen.messages.push(message));
  client.on("subscribed", (notice) => seen.subscribed.push(notice));
  client.on("gap", (gap) => seen.gaps.push(gap));
  return { client, seen };
}

test("a client that got nothing but the notice is cut, and resumes: nothing missed", T, async () => {
  const server = await serve();
  const proxy = await proxyTo(server);
  const { client, seen } = recording(`ws://127.0.0.1:${proxy.port}/feed/quiet`);
  const first = await next(client, "subscribed");
  assert.equal(first.topic, "feed:quiet");
  assert.equal(first.recovered, undefined, "a first subscription recovers nothing");
  assert.deepEqual(client.positions, [{ topic: "feed:quiet", epoch: first.epoch, offset: first.offset }]);

  const cut = away(proxy);
  await next(client, "close");
  assert.equal(await publish(server, "quiet", 5), 5);
  const resumed = next(client, "subscribed");
  cut.back();
  const notice = await resumed;
  assert.deepEqual(notice, { topic: "feed:quiet", epoch: first.epoch, offset: first.offset + 5, recovered: true });
  await until(5_000, "the five missed messages", () => seen.messages.length >= 5);
  await sleep(200);
  assert.deepEqual(seen.messages, [1, 2, 3, 4, 5]);
  assert.deepEqual(seen.gaps, []);
  assert.deepEqual(client.positions, [{ topic: "feed:quiet", epoch: first.epoch, offset: first.offset + 5 }]);

  // Positions kept by the app start a later client where this one stopped.
  client.close();
  const kept = client.positions;
  assert.equal(await publish(server, "quiet", 2), 2);
  const later = recording(server.url("/feed/quiet"), { positions: kept });
  const again = await next(later.client, "subscribed");
  assert.equal(again.recovered, true);
  await until(5_000, "the two missed messages", () => later.seen.messages.length >= 2);
  await sleep(100);
  assert.deepEqual(later.seen.messages, [1, 2]);
  later.client.close();
  await proxy.close();
  await server.kill();
});

/** Eight clients, each through a proxy to `servers` (in turn, when there are several) that
 * cuts it at random moments a thousand times in all, while a publisher on the first server
 * publishes: every client ends with every message once, in order, every resume recovered. */
async function thousandCuts(servers, where) {
  const CLIENTS = 8;
  const CUTS = 1000;
  const proxies = await Promise.all(Array.from({ length: CLIENTS }, () => proxyTo(servers)));
  const readers = proxies.map((proxy) =>
    recording(`ws://127.0.0.1:${proxy.port}/feed/storm`, { reconnect: { initialDelay: 5, maxDelay: 20 }, connectTimeout: 2_000 }),
  );
  await Promise.all(readers.map(({ client }) => next(client, "subscribed")));
  const started = performance.now();
  const publisher = await publishing(servers[0], "storm", 2);

  // Each client's proxy cuts it at random moments: a reset, a stall then a reset, or a slow
  // spell then a reset; whatever the client is doing (open, mid-handshake, probing).
  let cuts = 0;
  let openCuts = 0;
  let cutting = true;
  const cutters = proxies.map(async (proxy, i) => {
    while (cutting) {
      await sleep(Math.random() * 25);
      if (!cutting || proxy.connections === 0) continue;
      const fault = Math.random();
      if (fault < 0.25) {
        proxy.stall();
        await sleep(Math.random() * 10);
      } else if (fault < 0.5) {
        // A slow link: every chunk late, in order, for a while.
        proxy.delay(1 + Math.random() * 20);
        await sleep(Math.random() * 30);
      }
      if (readers[i].client.state === "open") openCuts++;
      proxy.cut();
      proxy.forward();
      cuts++;
    }
  });
  try {
    await until(60_000, () => `${CUTS} cuts of open connections (${openCuts} so far, ${cuts} in all)`, () => openCuts >= CUTS);
  } finally {
    cutting = false;
    await Promise.all(cutters);
  }
  const published = await publisher.stop();
  const counts = () => {
    const trouble = readers.map(({ seen }, i) => {
      const notices = seen.subscribed.filter((notice) => notice.recovered === false);
      return notices.length + seen.gaps.length > 0 ? ` client ${i}: ${JSON.stringify({ notices, gaps: seen.gaps })}` : "";
    });
    return readers.map(({ seen }) => seen.messages.length).join(", ") + trouble.join("");
  };
  await until(20_000, () => `every client's ${published} messages (they have ${counts()})`, () =>
    readers.every(({ seen }) => seen.messages.length >= published),
  );
  const took = (performance.now() - started) / 1000;
  await sleep(200);

  let recovered = 0;
  for (const [i, { client, seen }] of readers.entries()) {
    const twice = seen.messages.filter((value, k) => seen.messages.indexOf(value) !== k);
    const odd = seen.subscribed.filter((notice) => notice.recovered === false);
    const told = JSON.stringify({ twice: twice.slice(0, 10), odd, gaps: seen.gaps.slice(0, 5) });
    assert.equal(seen.messages.length, published, `client ${i}: ${seen.messages.length} messages of ${published} ${told}`);
    const wrong = seen.messages.findIndex((value, k) => value !== k + 1);
    assert.equal(wrong, -1, `client ${i}: message ${wrong + 1} is ${seen.messages[wrong]}`);
    assert.deepEqual(seen.gaps, [], `client ${i}: gaps`);
    const notices = seen.subscribed.slice(1);
    assert.ok(notices.every((notice) => notice.recovered === true), `client ${i}: ${JSON.stringify(notices.find((n) => n.recovered !== true))}`);
    recovered += notices.length;
    assert.equal(client.positions[0].offset, seen.subscribed[0].offset + published);
    client.close();
  }
  console.log(
    `# ${where}: ${cuts} cuts (${openCuts} of open connections) of ${CLIENTS} clients while ${published} messages were published ` +
      `in ${took.toFixed(1)} s; ${recovered} resumes, all recovered; every client got every message once, in order`,
  );
  await Promise.all(proxies.map((proxy) => proxy.close()));
}

test("a thousand cuts at random moments while a publisher publishes: every message once, in order", { timeout: 90_000 }, async () => {
  const server = await serve({ history: 4096 });
  await thousandCuts([server], "one server");
  await server.kill();
});

test("a thousand cuts on two servers through Redis, each reconnect to the other: every message once, in order", { timeout: 120_000 }, async () => {
  const redis = await startRedis();
  running.redises.add(redis);
  const a = await serve({ history: 4096, redis: redis.url });
  const b = await serve({ history: 4096, redis: redis.url });
  await thousandCuts([a, b], "two servers through Redis");
  await Promise.all([a.kill(), b.kill()]);
});

test("a client too far behind is told (recovered: false) and gets no flood, then the live messages", T, async () => {
  const server = await serve({ history: 16 });
  const proxy = await proxyTo(server);
  const { client, seen } = recording(`ws://127.0.0.1:${proxy.port}/feed/behind`);
  const first = await next(client, "subscribed");

  const cut = away(proxy);
  await next(client, "close");
  assert.equal(await publish(server, "behind", 40), 40);
  const resumed = next(client, "subscribed");
  cut.back();
  const notice = await resumed;
  assert.deepEqual(notice, {
    topic: "feed:behind",
    epoch: first.epoch,
    offset: first.offset + 40,
    recovered: false,
    reason: "behind",
  });
  // The endpoint's answer to it (a snapshot), and none of the missed messages.
  await sleep(300);
  assert.deepEqual(seen.messages, [{ snapshot: "Behind" }]);
  assert.deepEqual(client.positions, [{ topic: "feed:behind", epoch: first.epoch, offset: first.offset + 40 }]);

  // The live messages follow on, with no gap reported.
  assert.equal(await publish(server, "behind", 2), 2);
  await until(5_000, "two live messages", () => seen.messages.length >= 3);
  assert.deepEqual(seen.messages, [{ snapshot: "Behind" }, 1, 2]);
  assert.deepEqual(seen.gaps, []);
  client.close();
  await proxy.close();
  await server.kill();
});

test("reconnect URLs keep the user's query and carry one, current wsock-resume", T, async () => {
  const server = await serve();
  const proxy = await proxyTo(server);
  const urls = [];
  class Recorded extends WebSocket {
    constructor(url, protocols) {
      urls.push(url);
      super(url, protocols);
    }
  }
  const base = `ws://127.0.0.1:${proxy.port}/feed/params?room=a%20b&flag&x=%2B1`;
  const { client, seen } = recording(base, { WebSocket: Recorded });
  const first = await next(client, "subscribed");
  assert.deepEqual(urls, [base], "no parameter before there is a position");

  assert.equal(await publish(server, "params", 2), 2);
  await until(5_000, "two messages", () => seen.messages.length >= 2);
  const resumes = [];
  for (const round of [1, 2]) {
    const resumed = next(client, "subscribed");
    proxy.cut();
    assert.equal((await resumed).recovered, true);
    const url = urls.at(-1);
    assert.ok(url.startsWith(`${base}&wsock-resume=`), url);
    const params = new URL(url).searchParams;
    assert.equal(params.getAll("wsock-resume").length, 1, url);
    assert.equal(params.get("room"), "a b");
    assert.equal(params.get("x"), "+1");
    resumes.push(JSON.parse(params.get("wsock-resume")));
    if (round === 1) {
      assert.equal(await publish(server, "params", 1), 1);
      await until(5_000, "a third message", () => seen.messages.length >= 3);
    }
  }
  assert.deepEqual(resumes, [
    [["feed:params", first.epoch, first.offset + 2]],
    [["feed:params", first.epoch, first.offset + 3]],
  ]);
  assert.deepEqual(seen.messages, [1, 2, 1]);
  client.close();

  // A plain endpoint never sees it: no positions, no parameter.
  urls.length = 0;
  const echo = open(`ws://127.0.0.1:${proxy.port}/echo?k=v`, { format: "text", WebSocket: Recorded, reconnect: { initialDelay: 20, maxDelay: 50 } });
  await next(echo, "open");
  proxy.cut();
  await next(echo, "reconnected");
  assert.deepEqual(urls, [`ws://127.0.0.1:${proxy.port}/echo?k=v`, `ws://127.0.0.1:${proxy.port}/echo?k=v`]);
  assert.deepEqual(echo.positions, []);
  echo.close();
  await proxy.close();
  await server.kill();
});

const header = (fields) => `${RS}${JSON.stringify(fields)}${RS}`;
const bytes = (...parts) =>
  Uint8Array.from(parts.flatMap((part) => (typeof part === "string" ? [...new TextEncoder().encode(part)] : part))).buffer;

test("resume frames, scripted: decoded as plain ones; repeats dropped; gaps told; 64 topics kept", T, async () => {
  Scripted.all = [];
  const { client, seen } = recording("ws://127.0.0.1:9/feed", { WebSocket: Scripted, probe: false, heartbeat: 60_000 });
  const errors = [];
  client.on("error", (error) => errors.push(error.message));
  const heard = [];
  client.on("message", (_, position) => heard.push(position));
  await next(client, "open");
  const ws = Scripted.all[0];
  ws.frame(header({ subscribed: "t", epoch: "e1", offset: 4 }));
  ws.frame("");
  ws.frame(header({ topic: "t", epoch: "e1", offset: 5 }) + '{"a":1}');
  ws.frame(header({ topic: "t", epoch: "e1", offset: 5 }) + '{"a":"again"}');
  ws.frame(header({ topic: "t", epoch: "e1", offset: 3 }) + '{"a":"old"}');
  ws.frame(header({ topic: "t", epoch: "e1", offset: 6 }) + "not json");
  ws.frame(header({ topic: "t", epoch: "e1", offset: 7, skipped: true })); // published except us
  ws.frame(header({ topic: "t", epoch: "e1", offset: 8 }) + "[8]");
  ws.frame(header({ topic: "t", epoch: "e2", offset: 1 }) + '"new epoch"');
  ws.frame('{"plain":true}');
  ws.frame(header({ topic: "t", epoch: "e2", offset: 1 }).slice(0, -1)); // no second 0x1E: plain
  assert.deepEqual(seen.subscribed, [{ topic: "t", epoch: "e1", offset: 4 }]);
  assert.deepEqual(seen.messages, [{ a: 1 }, [8], "new epoch", { plain: true }]);
  // Each topic message says which topic, and where; a plain one says nothing.
  assert.deepEqual(heard, [
    { topic: "t", epoch: "e1", offset: 5 },
    { topic: "t", epoch: "e1", offset: 8 },
    { topic: "t", epoch: "e2", offset: 1 },
    undefined,
  ]);
  assert.deepEqual(errors, ["a message that is not JSON", "a message that is not JSON"]);
  // A skip moves the position on without a message; another epoch is a gap.
  assert.deepEqual(seen.gaps, [{ topic: "t", epoch: "e2", offset: 1, previous: { topic: "t", epoch: "e1", offset: 8 } }]);
  assert.deepEqual(client.positions, [{ topic: "t", epoch: "e2", offset: 1 }]);

  // Notices: recovered keeps the position (the missed messages follow), otherwise it is the
  // notice's.
  ws.frame(header({ subscribed: "t", epoch: "e2", offset: 9, recovered: true }));
  assert.deepEqual(client.positions, [{ topic: "t", epoch: "e2", offset: 1 }]);
  ws.frame(header({ subscribed: "u", epoch: "f", offset: 30, recovered: false, reason: "cap" }));
  assert.deepEqual(seen.subscribed.at(-1), { topic: "u", epoch: "f", offset: 30, recovered: false, reason: "cap" });
  assert.deepEqual(client.positions.at(-1), { topic: "u", epoch: "f", offset: 30 });
  client.positions[0].offset = 1000; // a copy: the client's own is untouched
  assert.equal(client.positions[0].offset, 1);
  // An offset past the next one is a gap too (the server never skips one).
  ws.frame(header({ topic: "t", epoch: "e2", offset: 3 }) + "3");
  assert.deepEqual(seen.gaps.at(-1), { topic: "t", epoch: "e2", offset: 3, previous: { topic: "t", epoch: "e2", offset: 1 } });
  assert.equal(seen.messages.at(-1), 3);

  // The other formats: binary frames carry the header too, and the body keeps its type.
  const raw = recording("ws://127.0.0.1:9/feed", { WebSocket: Scripted, probe: false, format: "raw" });
  await next(raw.client, "open");
  const rawWs = Scripted.all.at(-1);
  rawWs.frame(bytes(header({ topic: "b", epoch: "e", offset: 1 }), [0, 30, 255]));
  rawWs.frame(header({ topic: "b", epoch: "e", offset: 2 }) + "text body");
  rawWs.frame(bytes([30, 1, 2])); // no header: plain
  rawWs.frame(bytes(header({ topic: "b", epoch: "e", offset: 2 }), [9])); // a repeat
  const [binary, text, plain] = raw.seen.messages;
  assert.equal(raw.seen.messages.length, 3);
  assert.deepEqual([...new Uint8Array(binary)], [0, 30, 255]);
  assert.equal(text, "text body");
  assert.deepEqual([...new Uint8Array(plain)], [30, 1, 2]);
  raw.client.close();

  // At most 64 topics, the most recently updated; all of them go with the next attempt.
  for (let i = 0; i < 70; i++) ws.frame(header({ topic: `many${i}`, epoch: "m", offset: i + 1 }) + "0");
  const positions = client.positions;
  assert.equal(positions.length, 64);
  assert.equal(positions[0].topic, "many6");
  assert.equal(positions.at(-1).topic, "many69");
  const retry = next(client, "open");
  ws.drop();
  await retry;
  const sent = JSON.parse(new URL(Scripted.all.at(-1).url).searchParams.get("wsock-resume"));
  assert.deepEqual(sent, positions.map(({ topic, epoch, offset }) => [topic, epoch, offset]));
  client.close();
});
