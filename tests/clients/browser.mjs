// Headless Chromium, driven by playwright-core, against wsock's examples.
// Usage: node browser.mjs console http://127.0.0.1:PORT/   (the echo example's dev console;
//        https://.. for the tls example's, its self-signed certificate accepted)
//        node browser.mjs chat http://127.0.0.1:PORT/      (the chat example's page)
//        node browser.mjs chat-restart http://127.0.0.1:PORT/
//                                     (the chat page while its server is killed and restarted)
//        node browser.mjs chat http://127.0.0.1:A/ http://127.0.0.1:B/
//                                     (two chat servers sharing a Redis: ada on A, bob on B)
//        node browser.mjs login http://127.0.0.1:PORT/     (the login example's page)
//        node browser.mjs refused http://127.0.0.1:PORT/   (the chat example's console, refused)
//        node browser.mjs operations http://127.0.0.1:PORT/_ops TOKEN
//                                     (the operations page; `READY load` asks the test for load)
//
// With SCREENSHOT=dir, each mode saves a screenshot of its page there, at its busiest.
// Prints one line per step; `READY shutdown` asks the test to stop the server (Ctrl-C), after
// which the page must show close code 1001; `READY restart` asks it to kill the server and
// start it again on the same port, and it answers `RESTARTED` on stdin. Exits non-zero on the
// first failure.

import { chromium } from "playwright-core";

const [mode, base, other] = process.argv.slice(2);
const TIMEOUT = 20_000;
// The tls example's certificate is self-signed: accepted for this test only.
const CONTEXT = { ignoreHTTPSErrors: base.startsWith("https:") };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // playwright-core starts every browser with a fresh, empty profile directory.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
  ],
  headless: true,
  timeout: 30_000,
});

async function page(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (error) => console.log(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") console.log(`page console: ${message.text()}`);
  });
  return page;
}

/** Waits until the element's text contains `text`, reporting what it showed instead. */
async function see(page, selector, text) {
  try {
    await page.waitForFunction(
      ([selector, text]) => document.querySelector(selector)?.textContent.includes(text),
      [selector, text],
      { timeout: TIMEOUT },
    );
  } catch (error) {
    const shown = await page.locator(selector).textContent().catch(() => "(missing)");
    throw new Error(`${selector} never showed ${JSON.stringify(text)}; it shows ${JSON.stringify(shown)}`);
  }
}

/** Waits until `selector`'s text no longer holds `text`. */
async function unsee(page, selector, text) {
  try {
    await page.waitForFunction(
      ([selector, text]) => !document.querySelector(selector)?.textContent.includes(text),
      [selector, text],
      { timeout: TIMEOUT },
    );
  } catch (error) {
    const shown = await page.locator(selector).textContent().catch(() => "(missing)");
    throw new Error(`${selector} still shows ${JSON.stringify(text)}: ${JSON.stringify(shown)}`);
  }
}

async function devConsole() {
  const tab = await page(await browser.newContext(CONTEXT));
  const response = await tab.goto(base);
  if (response.status() !== 200) throw new Error(`the console page answered ${response.status()}`);
  await see(tab, "#status", "open");
  const scheme = await tab.evaluate(() => location.protocol);
  console.log(`ok the console connected to its endpoint (page over ${scheme})`);
  // Chromium offers permessage-deflate by default; the server agrees, and the log says so.
  await see(tab, "#log", "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  console.log("ok permessage-deflate negotiated with Chromium");
  const json = JSON.stringify(Array.from({ length: 300 }, (_, i) => ({ id: i, text: `hello ${i}` })));
  await tab.check("input[name=kind][value=json]");
  await tab.fill("#message", json);
  await tab.click("#send");
  await see(tab, "#log", `← text (${json.length} chars, JSON)`);
  await tab.check("input[name=kind][value=text]");
  console.log(`ok ${json.length} bytes of JSON echoed over permessage-deflate`);

  await tab.fill("#message", "hello from chromium");
  await tab.click("#send");
  await see(tab, "#log", "← text (19 chars) hello from chromium");
  console.log("ok text echoed");

  await tab.check("input[name=kind][value=json]");
  await tab.fill("#message", '{"n": 1, "list": [true]}');
  await tab.click("#send");
  await see(tab, "#log", '← text (21 chars, JSON) {\n  "n": 1,');
  await tab.fill("#message", "{not json");
  await tab.click("#send");
  await see(tab, "#error", "not valid JSON");
  console.log("ok JSON echoed, invalid JSON refused in the page");

  await tab.check("input[name=kind][value=binary]");
  await tab.fill("#message", "00 01 fe ff");
  await tab.click("#send");
  await see(tab, "#log", "← binary (4 bytes) 00 01 fe ff");
  console.log("ok binary echoed");

  // Opened from a link on another site, the console waits for a click before connecting.
  const elsewhere = await page(await browser.newContext(CONTEXT));
  await elsewhere.setContent(`<a id="go" href="${base}?from=elsewhere">the console</a>`);
  await elsewhere.click("#go");
  await elsewhere.waitForURL(/from=elsewhere/);
  await see(elsewhere, "#status", "not connected: this page was opened from another site");
  await elsewhere.click("#connect");
  await see(elsewhere, "#status", "open");
  console.log("ok opened from another site, the console connects only on a click");

  console.log("READY shutdown");
  await see(tab, "#status", "closed 1001 (going away)");
  console.log("ok the console shows 1001 (going away) when the server shuts down");
}

// The chat example's console, opened without a name: the endpoint's guard refuses the
// upgrade with 400 and a reason, which the console shows (browsers hide it from pages; the
// console asks its server with a probe). A page of another origin cannot read that probe.
async function refused() {
  const tab = await page(await browser.newContext(CONTEXT));
  const response = await tab.goto(`${base}chat/lobby`);
  if (response.status() !== 200) throw new Error(`the console page answered ${response.status()}`);
  await see(tab, "#status", "refused: 400 Bad Request: choose a name: ?name=..");
  await see(tab, "#refusal-status", "400 Bad Request");
  await see(tab, "#refusal-body", "choose a name: ?name=..");
  await see(tab, "#log", "the server refused the upgrade with 400 Bad Request: choose a name: ?name=..");
  console.log("ok the console shows the refusal's status and body");
  await screenshot(tab, "console-refused");

  // With a name, the same console connects; the refusal note goes away.
  await tab.fill("#url", (await tab.inputValue("#url")) + "?name=ada");
  await tab.click("#connect");
  await see(tab, "#status", "open");
  if (await tab.isVisible("#refusal")) throw new Error("the refusal note stayed up after a connection opened");
  console.log("ok with ?name=ada the console connects");

  // Another origin (localhost instead of 127.0.0.1, same server) cannot read the probe: the
  // custom header needs a CORS preflight, which the server never grants.
  const other = await page(await browser.newContext(CONTEXT));
  await other.goto(base.replace("127.0.0.1", "localhost"));
  const crossSite = await other.evaluate(async (url) => {
    try {
      const answer = await fetch(url, { headers: { "X-Wsock-Console": "probe" } });
      return `read ${answer.status}: ${await answer.text()}`;
    } catch (error) {
      return `blocked: ${error.message}`;
    }
  }, `${base}chat/lobby`);
  if (!crossSite.startsWith("blocked")) throw new Error(`another origin read the probe: ${crossSite}`);
  console.log(`ok another origin cannot read the probe (${crossSite})`);

  console.log("READY shutdown");
  await see(tab, "#status", "closed 1001 (going away)");
  console.log("ok the console shows 1001 (going away) when the server shuts down");
}

async function chat() {
  const ada = await page(await browser.newContext(CONTEXT));
  const bob = await page(await browser.newContext(CONTEXT));
  for (const [tab, name, url] of [[ada, "ada", base], [bob, "bob", other || base]]) {
    await tab.goto(url);
    await tab.fill("#name", name);
    await tab.fill("#room", "blue");
    await tab.click("#join");
    await see(tab, "#status", `In room blue as ${name}.`);
  }
  await see(ada, "#messages", "bob joined");
  // The member lists come from the room's presence: everyone, on every server.
  await see(ada, "#members", "bob");
  await see(bob, "#members", "ada");
  console.log("ok both joined; ada saw bob arrive, and each sees the other in the member list");

  await bob.fill("#text", "hello ada, from the other tab");
  await bob.click("#send");
  await see(ada, "#messages", "bob: hello ada, from the other tab");
  await see(bob, "#messages", "bob: hello ada, from the other tab");
  await ada.fill("#text", "hi bob");
  await ada.press("#text", "Enter");
  await see(bob, "#messages", "ada: hi bob");
  if (process.env.SCREENSHOT) await ada.screenshot({ path: process.env.SCREENSHOT });
  console.log("ok messages typed in one tab appear in the other");

  await bob.click("#leave");
  await see(ada, "#messages", "bob left");
  await see(bob, "#status", "Disconnected (1000");
  await unsee(ada, "#members", "bob");
  console.log("ok bob left and ada saw it, in the messages and the member list");

  console.log("READY shutdown");
  await see(ada, "#status", "Disconnected (1001");
  console.log("ok the page shows 1001 when the server shuts down");
}

/** Waits for `line` on stdin (the test's answer to a `READY ..` line). */
async function hear(line) {
  const { createInterface } = await import("node:readline");
  const lines = createInterface({ input: process.stdin });
  let timer;
  try {
    await Promise.race([
      new Promise((heard) => lines.on("line", (got) => got.trim() === line && heard())),
      new Promise((_, late) => {
        timer = setTimeout(() => late(new Error(`never heard ${line}`)), TIMEOUT);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    lines.close();
  }
}

// The chat page on wsock's client: its server is killed (no close frame) and restarted on the
// same port while two tabs are in a room; both reconnect by themselves, rejoin, and chat again.
async function chatRestart() {
  const ada = await page(await browser.newContext(CONTEXT));
  const bob = await page(await browser.newContext(CONTEXT));
  for (const [tab, name] of [[ada, "ada"], [bob, "bob"]]) {
    await tab.goto(base);
    await tab.fill("#name", name);
    await tab.fill("#room", "blue");
    await tab.click("#join");
    await see(tab, "#status", `In room blue as ${name}.`);
  }
  await bob.fill("#text", "before the restart");
  await bob.click("#send");
  await see(ada, "#messages", "bob: before the restart");
  console.log("ok both joined and chat");
  // The page's script (compiled from page.ts) imports the client package, which the page's
  // import map resolves to the copy the server serves.
  const script = await ada.evaluate(() =>
    [...document.scripts].some((s) => s.type === "module" && s.text.includes('from "wsock-client"')) &&
    [...document.scripts].some((s) => s.type === "importmap" &&
      JSON.parse(s.text).imports["wsock-client"] === "/_wsock/client.js"));
  if (!script) throw new Error("the chat page does not import wsock's client");

  console.log("READY restart");
  await hear("RESTARTED");
  for (const [tab, name] of [[ada, "ada"], [bob, "bob"]]) {
    await see(tab, "#messages", "Disconnected (1006");
    await see(tab, "#messages", "reconnected");
    await see(tab, "#status", `In room blue as ${name}.`);
  }
  console.log("ok both tabs saw the connection drop, reconnected by themselves and rejoined");
  await screenshot(ada, "chat-reconnected");

  await ada.fill("#text", "after the restart");
  await ada.press("#text", "Enter");
  await see(bob, "#messages", "ada: after the restart");
  await bob.fill("#text", "hi again");
  await bob.click("#send");
  await see(ada, "#messages", "bob: hi again");
  const state = await ada.evaluate(() => document.body.dataset.state);
  if (state !== "in") throw new Error(`the page's state is ${state}, not in`);
  console.log("ok they chat again after the restart");

  console.log("READY shutdown");
  await see(ada, "#status", "Disconnected (1001");
  console.log("ok the page shows 1001 when the server shuts down");
}

// The operations page: refused without its token; with it, it connects, and once the test
// has started its load (LOAD connections subscribed to `ops-load`, messages both ways), the
// numbers follow.
async function operations() {
  const token = other;
  const tab = await page(await browser.newContext(CONTEXT));
  const refused = await tab.goto(base);
  if (refused.status() !== 401) throw new Error(`without the token: ${refused.status()}`);
  const wrong = await tab.goto(`${base}?token=wrong-wrong-wrong-wrong`);
  if (wrong.status() !== 403) throw new Error(`with a wrong token: ${wrong.status()}`);
  console.log("ok refused without the token (401) and with a wrong one (403)");
  const opened = await tab.goto(`${base}?token=${encodeURIComponent(token)}`);
  if (opened.status() !== 200) throw new Error(`with the token: ${opened.status()}`);
  await see(tab, "#status", "live");
  await see(tab, "#connections", "0");
  console.log("ok the page loads and connects over its WebSocket");

  console.log("READY load");
  // (The page's policy forbids `eval`: the test is a fixed comparison, `n >= min`.)
  const number = async (selector, min, what) => {
    try {
      await tab.waitForFunction(
        ([selector, min]) => Number(document.querySelector(selector).textContent) >= min,
        [selector, min],
        { timeout: TIMEOUT },
      );
    } catch (error) {
      const shown = await tab.locator(selector).textContent().catch(() => "(missing)");
      throw new Error(`${selector} never showed ${what}; it shows ${JSON.stringify(shown)}`);
    }
  };
  await number("#connections", 5, "5 connections");
  await see(tab, "#connections", "5");
  await see(tab, "#endpoints", "load5");
  await number("#rate-in", 11, "more than 10 messages/s in");
  await number("#rate-out", 11, "more than 10 messages/s out");
  await see(tab, "#topics", "ops-load5");
  console.log("ok the page follows the load: 5 connections, messages/s in and out, the topic's 5 subscribers");
  // A few seconds of history on the charts, for the screenshot.
  await tab.waitForTimeout(4000);
  await screenshot(tab, "operations");
}

async function screenshot(tab, name) {
  if (process.env.SCREENSHOT) await tab.screenshot({ path: `${process.env.SCREENSHOT}/${name}.png` });
}

async function login() {
  const tab = await page(await browser.newContext(CONTEXT));
  await tab.goto(base);
  await see(tab, "#who", "Not logged in");
  console.log("ok without a session, the page says so (GET /api/me answered 401)");

  await tab.fill("input[name=name]", "ada");
  await tab.click("#login button");
  await see(tab, "#who", "Logged in as ada.");
  await see(tab, "#log", "hello ada");
  const cookies = await tab.context().cookies();
  const session = cookies.find((cookie) => cookie.name === "WSOCK_SESSION");
  if (!session || !session.httpOnly || session.sameSite !== "Lax" || session.expires <= Date.now() / 1000) {
    throw new Error(`the session cookie is not as issued: ${JSON.stringify(session)}`);
  }
  console.log("ok logged in: an HttpOnly, SameSite=Lax cookie with an expiry; the endpoint greets ada");

  await tab.fill("#text", "hi from chromium");
  await tab.press("#text", "Enter");
  await see(tab, "#log", "ada: hi from chromium");
  console.log("ok the endpoint signs what ada sends with her name");
  await screenshot(tab, "login");

  await tab.click("#logout button");
  await see(tab, "#who", "Not logged in");
  const left = (await tab.context().cookies()).find((cookie) => cookie.name === "WSOCK_SESSION");
  if (left) throw new Error(`logout left the cookie: ${JSON.stringify(left)}`);
  console.log("ok logged out: the browser dropped the cookie");

  await tab.fill("input[name=name]", "bob");
  await tab.click("#login button");
  await see(tab, "#log", "hello bob");
  console.log("READY shutdown");
  await see(tab, "#log", "closed 1001");
  console.log("ok the page shows 1001 when the server shuts down");
}

try {
  if (mode === "console") await devConsole();
  else if (mode === "chat") await chat();
  else if (mode === "chat-restart") await chatRestart();
  else if (mode === "login") await login();
  else if (mode === "refused") await refused();
  else if (mode === "operations") await operations();
  else throw new Error(`unknown mode ${mode}: use console, refused, chat, chat-restart, login or operations`);
  console.log(`all browser ${mode} checks passed`);
} finally {
  await browser.close();
}
