// A TCP proxy for fault injection, driven by the tests: it forwards between its clients and
// a target, and on command cuts every connection with a reset (RST), stalls (keeps the
// connections open and forwards nothing, new ones included, as a network that went away
// without a word), or delays every chunk. Loopback only.
//
//   const proxy = await startProxy(targetPort);  // or [portA, portB]: connections alternate
//   proxy.port;            // where clients connect
//   proxy.stall();         // silence, both ways, no close
//   proxy.forward();       // back to normal (stalled bytes are dropped, not replayed)
//   proxy.delay(200);      // each chunk waits 200 ms, in order
//   proxy.cut();           // RST to both sides of every open connection
//   await proxy.close();

import net from "node:net";

/** Resets `socket` (RST); one whose side is closing already (it sent its FIN) is destroyed:
 * Node 20's `resetAndDestroy` fails then (EINVAL) and leaks the handle, and the process spins
 * at exit. */
function reset(socket) {
  if (socket.writableEnded) socket.destroy();
  else socket.resetAndDestroy();
}

export async function startProxy(targetPort, host = "127.0.0.1") {
  let mode = "forward";
  let wait = 0;
  const pairs = new Set();
  // Several targets: each new connection goes to the next (a reconnect lands on another
  // server).
  const targets = Array.isArray(targetPort) ? targetPort : [targetPort];
  let accepted = 0;

  const server = net.createServer((client) => {
    const upstream = net.connect(targets[accepted++ % targets.length], host);
    const pair = { client, upstream };
    pairs.add(pair);
    const pipe = (from, to) => {
      let chain = Promise.resolve();
      from.on("data", (chunk) => {
        if (mode === "stall") return;
        if (wait === 0) return void to.write(chunk);
        const ms = wait;
        // Delayed chunks keep their order.
        chain = chain.then(() => new Promise((done) => setTimeout(done, ms))).then(() => {
          if (mode !== "stall" && !to.destroyed) to.write(chunk);
        });
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  });
  await new Promise((ready) => server.listen(0, host, ready));

  return {
    port: server.address().port,
    forward() {
      mode = "forward";
      wait = 0;
    },
    stall() {
      mode = "stall";
    },
    delay(ms) {
      mode = "forward";
      wait = ms;
    },
    /** Resets every open connection, both sides; new ones are forwarded. */
    cut() {
      for (const { client, upstream } of pairs) {
        reset(client);
        reset(upstream);
      }
      pairs.clear();
    },
    get connections() {
      return pairs.size;
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      await new Promise((done) => server.close(done));
    },
  };
}
