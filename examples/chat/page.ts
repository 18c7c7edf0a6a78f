// The chat page's script, in TypeScript against the chat's generated types (contract.ts: what
// the endpoint sends, from the Rust `Event`) and those of wsock's client. Compiled to page.js
// (`WSOCK_BLESS=1 cargo test --all-features --test contract chat_page`), which the server
// serves inline in index.html.
//
// wsock's client reconnects (with jittered backoff), notices a dead connection by the server's
// heartbeats, and queues what is typed meanwhile. Each (re)connection rejoins the room: the
// room and the name are in the URL.
import { connect, type Client, type CloseInfo, type Member } from "wsock-client";
import type { ChatReceive, ChatSend } from "./contract.js";

/** The page's element of that id, of that type. */
function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element as T;
}

const CODES: Record<number, string> = {
  1000: "closed", 1001: "the server is going away", 1003: "unsupported message",
  1006: "connection lost", 1008: "policy violation", 1009: "message too big",
  1011: "server error", 1013: "try again later",
};
let client: Client<ChatSend, ChatReceive> | null = null;

function append(item: HTMLLIElement): void {
  const box = $("messages");
  box.append(item);
  box.scrollTop = box.scrollHeight;
}

function note(text: string): void {
  const item = document.createElement("li");
  item.className = "notice";
  item.textContent = text;
  append(item);
}

function said(from: string, text: string): void {
  const item = document.createElement("li");
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from + ": ";
  item.append(who, document.createTextNode(text));
  append(item);
}

/** A member's name, from its presence metadata (the server's `Who`: `{"name": ..}`). */
function nameOf(member: Member): string {
  const meta = member.meta;
  if (typeof meta === "object" && meta !== null && "name" in meta && typeof meta.name === "string") {
    return meta.name;
  }
  return member.key;
}

// Who is in the room, on every server: the room's presence, kept by the client (`&presence`
// in the URL asks the server for it).
function members(list: Member[]): void {
  $("members").replaceChildren(...list.map((member) => {
    const item = document.createElement("li");
    item.textContent = nameOf(member) + (member.connections > 1 ? ` (${member.connections})` : "");
    return item;
  }));
}

function status(text: string, error = false): void {
  const line = $("status");
  line.textContent = text;
  line.className = error ? "error" : "muted";
}

function joined(isIn: boolean): void {
  for (const id of ["text", "send", "leave"]) $<HTMLInputElement>(id).disabled = !isIn;
  for (const id of ["name", "room", "join"]) $<HTMLInputElement>(id).disabled = isIn;
  if (isIn) $("text").focus();
  document.body.dataset.state = isIn ? "in" : "out";
}

/** What an event from the server shows. The switch covers every variant of the Rust `Event`:
 * one added there, and regenerated, fails to compile here (`never`). */
function show(event: ChatReceive): void {
  switch (event.type) {
    case "welcome":
      status(`In room ${event.room} as ${event.you}.`);
      note(`you joined ${event.room} as ${event.you}`);
      break;
    case "joined":
      note(`${event.name} joined`);
      break;
    case "left":
      note(`${event.name} left`);
      break;
    case "message":
      said(event.from, event.text);
      break;
    case "notice":
      note(event.text);
      break;
    default: {
      const unknown: never = event;
      console.warn("an event this page does not know", unknown);
    }
  }
}

function disconnected(close: CloseInfo): string {
  return `Disconnected (${close.code}${close.reason ? ": " + close.reason : ""}): ` +
    `${CODES[close.code] ?? "closed"}.`;
}

function join(event: SubmitEvent): void {
  event.preventDefault();
  const name = $<HTMLInputElement>("name").value.trim();
  const roomInput = $<HTMLInputElement>("room");
  const room = roomInput.value.trim();
  if (!name || !roomInput.checkValidity()) {
    status("A name, and a room of letters, digits, - or _.", true);
    return;
  }
  const url = `/chat/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}&presence`;
  // Text goes out as it is typed; events come back as JSON. Heartbeats every 15 s (see
  // main.rs): 40 s without one and the page reconnects.
  const current = connect<ChatSend, ChatReceive>(url, {
    format: { send: "text", receive: "json" },
    heartbeat: 40000,
  });
  client = current;
  status(`Joining ${room}…`);
  joined(true);
  $("messages").replaceChildren();
  current.on("reconnected", () => note("reconnected"));
  current.on("presence", ({ topic }) => members(current.members(topic)));
  current.on("message", show);
  current.on("reconnecting", ({ delay }) => {
    if (client !== current) return;
    const was = ($("status").textContent ?? "").replace(/ Reconnecting.*/, "");
    status(`${was} Reconnecting in ${(delay / 1000).toFixed(1)} s…`, true);
  });
  current.on("close", (close) => {
    if (client !== current) return;
    if (close.willRetry) {
      members([]);
      if (close.wasOpen) {
        const text = disconnected(close);
        status(text, true);
        note(text);
      } else {
        status("Cannot reach the server.", true);
      }
      return;
    }
    client = null;
    joined(false);
    members([]);
    if (close.refusal) {
      status(`Could not join: ${close.refusal.body}`, true);
      return;
    }
    if (!close.wasOpen) {
      status("Could not join: the server refused the name or the room.", true);
      return;
    }
    const text = disconnected(close);
    status(text, close.code !== 1000);
    note(text);
  });
}

$<HTMLFormElement>("join-form").addEventListener("submit", join);
$("leave").addEventListener("click", () => client?.close(1000, "bye"));
$<HTMLFormElement>("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>("text");
  // While reconnecting, the client queues it and sends it once back in the room.
  if (client && input.value.trim() && client.send(input.value)) input.value = "";
});
