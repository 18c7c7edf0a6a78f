/**
 * wsock's client: one WebSocket that stays connected.
 *
 * It reconnects with exponential backoff and full jitter, notices a dead connection through
 * the server's heartbeats (browsers hide WebSocket pings from page code), queues what is sent
 * while it is not connected, parses JSON, and says why a connection was refused. It speaks to
 * any wsock endpoint as it is, and to any other WebSocket server. With a `resume = true`
 * endpoint it resumes the topics by itself: reconnected, it gets what it missed, once.
 *
 * ```ts
 * import { connect } from "/_wsock/client.js"; // or "wsock-client" from npm
 *
 * const chat = connect<{ text: string }, { from: string; text: string }>("/chat/lobby");
 * chat.on("message", (m) => console.log(m.from, m.text));
 * chat.send({ text: "hello" }); // queued until the connection opens
 * ```
 *
 * @module
 */
/**
 * The default rule for retrying: not after a normal close (1000), a policy violation (1008)
 * or unsupported data (1003), nor after a refusal with a 4xx status other than 408 and 429;
 * everything else (1001 going away, 1006 lost, 1011, 1012, 1013, a 5xx) is retried.
 */
export function retryable(close) {
    const status = close.refusal?.status ?? 0;
    if (status >= 400 && status < 500)
        return status === 408 || status === 429;
    return ![1000, 1003, 1008].includes(close.code);
}
/** A connection open for this long counts as a success: the next loss starts the backoff
 * from the beginning (a server that accepts and drops at once still backs off). */
const STABLE = 5000;
/** The query parameter that carries the positions, and the most topics it may name. */
const RESUME = "wsock-resume";
const TOPICS = 64;
/** One endpoint, connected and reconnected. Made by {@link connect}. */
export class Client {
    /** The endpoint's absolute `ws:` or `wss:` URL. */
    url;
    /** Where the client is. */
    state = "connecting";
    #o;
    #sendAs;
    #receiveAs;
    #r;
    #ws;
    #on = {};
    /** The positions by topic, the least recently updated first. */
    #at = new Map();
    #present = new Map();
    #counts = new Map();
    #pending = new Map();
    /** The topic and position of the message being received, if it is a topic's. */
    #topic;
    #queue = [];
    #attempt = 0;
    #timer;
    #beat;
    #heard = 0;
    #openedAt = 0;
    #opened = false;
    /** The retry timer runs: going back online cuts it short. */
    #waiting = false;
    #online = () => {
        if (this.#waiting)
            this.#connect();
    };
    constructor(url, options = {}) {
        const target = new URL(url, globalThis.location?.href);
        target.protocol = target.protocol.replace(/^http/, "ws");
        this.url = target.href;
        this.#o = options;
        const format = options.format ?? "json";
        this.#sendAs = typeof format === "string" ? format : (format.send ?? "json");
        this.#receiveAs = typeof format === "string" ? format : (format.receive ?? "json");
        const r = options.reconnect ?? true;
        this.#r = r
            ? { initialDelay: 500, maxDelay: 30000, factor: 2, maxAttempts: Infinity, retryOn: retryable, ...(r === true ? {} : r) }
            : undefined;
        for (const { topic, epoch, offset } of options.positions ?? [])
            this.#note(topic, epoch, offset);
        globalThis.addEventListener?.("online", this.#online);
        this.#connect();
    }
    /** Where the client is in each topic of a `resume = true` endpoint (copies, the least
     * recently updated first; at most 64): what the next attempt sends, and what to keep to
     * resume a later client from (`options.positions`). */
    get positions() {
        return [...this.#at.values()].map((p) => ({ ...p }));
    }
    /** Who is present in `topic`, as the server last said (a watched presence; empty
     * otherwise). */
    members(topic) {
        return [...(this.#present.get(topic)?.values() ?? [])].map((m) => ({ ...m }));
    }
    /** How many are present in `topic`: the members, or a presence of counts only's count. */
    count(topic) {
        return this.#counts.get(topic) ?? this.#present.get(topic)?.size ?? 0;
    }
    /** The subprotocol the server chose, or `""`. */
    get protocol() {
        return this.#ws?.protocol ?? "";
    }
    /** The extensions the server agreed to (`permessage-deflate; ..`), or `""`. */
    get extensions() {
        return this.#ws?.extensions ?? "";
    }
    /** Listens to an event; returns the function that stops listening. */
    on(type, listener) {
        const set = (this.#on[type] ??= new Set());
        set.add(listener);
        return () => set.delete(listener);
    }
    /**
     * Sends a message now when open; otherwise queues it (see `queue`) to go, in order, once
     * connected. Returns false, and says why in an `error` event, when it refused the message
     * (the queue is full, or the client is closed): nothing is dropped silently. A message that
     * cannot be encoded (JSON with a cycle) throws.
     */
    send(message) {
        const format = this.#sendAs;
        const data = format === "json" ? JSON.stringify(message) : format === "text" ? String(message) : message;
        if (this.state === "open") {
            this.#ws.send(data);
            return true;
        }
        const limit = this.#o.queue ?? 100;
        if (this.state !== "closed" && this.#queue.length < limit) {
            this.#queue.push(data);
            return true;
        }
        this.#error(this.state === "closed" ? "not sent: the client is closed" : `not sent: not connected, and ${limit} messages wait already`);
        return false;
    }
    /** Closes the connection for good (1000 unless told otherwise): no more attempts. Queued
     * messages are dropped (they were never sent). */
    close(code = 1000, reason = "") {
        if (this.state === "closed")
            return;
        this.state = "closed";
        this.#stop();
        const ws = this.#ws;
        if (ws) {
            try {
                ws.close(code, reason);
            }
            catch {
                ws.close(1000);
            }
        }
        else {
            this.#emit("close", { code, reason, wasClean: true, wasOpen: false, willRetry: false });
        }
    }
    #connect() {
        clearTimeout(this.#timer);
        this.#waiting = false;
        const o = this.#o;
        let ws;
        try {
            ws = new (o.WebSocket ?? WebSocket)(this.#target(), o.protocols ?? []);
        }
        catch (error) {
            // A URL or a subprotocol the platform refuses: no attempt can succeed.
            this.state = "closed";
            this.#stop();
            this.#error(`cannot connect to ${this.url}`, undefined, error);
            this.#emit("close", { code: 1006, reason: String(error), wasClean: false, wasOpen: false, willRetry: false });
            return;
        }
        this.#ws = ws;
        ws.binaryType = "arraybuffer";
        this.#timer = setTimeout(() => this.#lost(ws, 1006, "connect timeout", false), o.connectTimeout ?? 10000);
        ws.onopen = () => {
            clearTimeout(this.#timer);
            const reconnected = this.#opened;
            const attempts = this.#attempt;
            this.#opened = true;
            this.#openedAt = Date.now();
            this.state = "open";
            this.#watch(ws);
            this.#emit("open", { protocol: ws.protocol, extensions: ws.extensions, reconnected });
            if (reconnected)
                this.#emit("reconnected", { attempts });
            // After the `open` listeners, so that what they send (a re-join) goes first.
            for (const data of this.#queue.splice(0))
                ws.send(data);
        };
        ws.onmessage = ({ data }) => this.#receive(data);
        // After an error, browsers fire the close event that says it all; some platforms (Node
        // 20's WebSocket) fire none when the upgrade failed.
        ws.onerror = () => {
            if (!this.#openedAt)
                this.#lost(ws, 1006, "", false);
        };
        ws.onclose = ({ code, reason, wasClean }) => this.#lost(ws, code, reason, wasClean);
    }
    /** The URL of the next attempt: the endpoint's, with the positions to resume from in
     * `wsock-resume` (any earlier value replaced, the other parameters kept as they are). */
    #target() {
        const url = new URL(this.url);
        const at = [...this.#at.values()];
        if (at.length) {
            const query = url.search.slice(1).split("&").filter((p) => p && p.split("=")[0] !== RESUME);
            query.push(`${RESUME}=${encodeURIComponent(JSON.stringify(at.map((p) => [p.topic, p.epoch, p.offset])))}`);
            url.search = query.join("&");
        }
        return url.href;
    }
    /** Notes the position in `topic`, keeping the 64 most recently updated. */
    #note(topic, epoch, offset) {
        const at = this.#at;
        at.delete(topic);
        at.set(topic, { topic, epoch, offset });
        if (at.size > TOPICS)
            at.delete(at.keys().next().value);
    }
    /**
     * A resumable endpoint's topic traffic: `0x1E`, a JSON header, `0x1E`, then a topic message
     * (returned, its position noted, unless it came already) or nothing (a notice, emitted as
     * `subscribed`). Any other frame is returned as it is.
     */
    #resume(data) {
        const text = typeof data === "string";
        const bytes = text ? new Uint8Array() : new Uint8Array(data);
        const end = text ? data.indexOf("\x1e", 1) : bytes.indexOf(30, 1);
        if ((text ? data.charCodeAt(0) : bytes[0]) !== 30 || end < 0)
            return data;
        let header;
        try {
            header = JSON.parse(text ? data.slice(1, end) : new TextDecoder().decode(bytes.subarray(1, end))) ?? {};
        }
        catch {
            return data;
        }
        if (typeof header.presence === "string") {
            this.#presence(header);
            return;
        }
        const { topic, subscribed, skipped, ...notice } = header;
        const { epoch, offset, recovered } = notice;
        if (typeof epoch !== "string" || typeof offset !== "number")
            return data;
        const previous = this.#at.get((subscribed ?? topic));
        if (typeof subscribed === "string") {
            // Recovered: the position holds, and the messages after it follow.
            if (!recovered || !previous)
                this.#note(subscribed, epoch, offset);
            this.#emit("subscribed", { topic: subscribed, ...notice });
            return;
        }
        if (typeof topic !== "string")
            return data;
        // Came already (a replay that overlaps what arrived): never twice.
        if (previous?.epoch === epoch && offset <= previous.offset)
            return;
        this.#note(topic, epoch, offset);
        this.#topic = { topic, epoch, offset };
        if (previous && (previous.epoch !== epoch || offset > previous.offset + 1)) {
            this.#emit("gap", { topic, epoch, offset, previous });
        }
        // In place of a message published except this connection: its position, no message.
        return skipped === true ? undefined : data.slice(end + 1);
    }
    /** A watched presence's frame: the list (`state`, replacing it), changes (`join`, `leave`),
     * or a count; emitted as one `presence` event. */
    #presence(frame) {
        const topic = frame.presence;
        if (typeof frame.count === "number") {
            this.#counts.set(topic, frame.count);
            this.#emit("presence", { topic, joined: [], left: [], updated: [], count: frame.count });
            return;
        }
        // A long list comes in several frames, all but the last with `more`: applied whole.
        if (frame.more) {
            const pending = this.#pending.get(topic) ?? [];
            this.#pending.set(topic, pending.concat(frame.state ?? []));
            return;
        }
        if (frame.state) {
            frame.state = (this.#pending.get(topic) ?? []).concat(frame.state);
            this.#pending.delete(topic);
        }
        const before = this.#present.get(topic) ?? new Map();
        const after = frame.state ? new Map() : new Map(before);
        const change = { topic, joined: [], left: [], updated: [] };
        for (const member of [...(frame.state ?? []), ...(frame.join ?? [])]) {
            const was = before.get(member.key);
            if (!was)
                change.joined.push(member);
            else if (JSON.stringify(was) !== JSON.stringify(member))
                change.updated.push(member);
            after.set(member.key, member);
        }
        for (const key of frame.leave ?? [])
            after.delete(key);
        for (const [key, member] of before)
            if (!after.has(key))
                change.left.push(member);
        this.#present.set(topic, after);
        this.#emit("presence", change);
    }
    #receive(data) {
        this.#heard = Date.now();
        const format = this.#receiveAs;
        // An empty text message is a heartbeat, and can never be JSON.
        if (data === "" && (this.#o.heartbeat || format === "json"))
            return;
        this.#topic = undefined;
        const body = this.#resume(data);
        if (body === undefined)
            return;
        data = body;
        let value = data;
        const text = typeof data === "string";
        if (format !== "raw" && text !== (format !== "binary")) {
            return this.#error(`a ${text ? "text" : "binary"} message, where ${format} was expected`, data);
        }
        if (format === "json") {
            try {
                value = JSON.parse(data);
            }
            catch (error) {
                return this.#error("a message that is not JSON", data, error);
            }
        }
        this.#emit("message", value, this.#topic);
    }
    /** Closes `ws` when nothing came for the heartbeat's time. */
    #watch(ws) {
        const limit = this.#o.heartbeat;
        if (!limit)
            return;
        this.#heard = Date.now();
        const check = () => {
            const left = this.#heard + limit - Date.now();
            if (left > 0)
                this.#beat = setTimeout(check, left);
            else
                this.#lost(ws, 1006, `no heartbeat for ${limit} ms`, false);
        };
        this.#beat = setTimeout(check, limit);
    }
    async #lost(ws, code, reason, wasClean) {
        if (ws !== this.#ws)
            return;
        this.#ws = undefined;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        clearTimeout(this.#timer);
        clearTimeout(this.#beat);
        if (this.state !== "closed")
            this.state = "reconnecting";
        const wasOpen = this.#openedAt > 0;
        if (!wasClean) {
            // A connection given up on (timeout, no heartbeat) may still be open underneath.
            try {
                ws.close();
            }
            catch {
                // closed already
            }
        }
        const info = { code, reason, wasClean, wasOpen, willRetry: false };
        if (wasOpen && Date.now() - this.#openedAt >= STABLE)
            this.#attempt = 0;
        this.#openedAt = 0;
        if (this.state !== "closed") {
            if (!wasOpen && this.#o.probe !== false)
                info.refusal = await this.#probe();
            const r = this.#r;
            // `close()` may have come during the probe.
            info.willRetry = !!r && this.state !== "closed" && this.#attempt < r.maxAttempts && r.retryOn(info);
            if (!info.willRetry) {
                this.state = "closed";
                this.#stop();
            }
        }
        this.#emit("close", info);
        // A `close` listener may have closed the client.
        if (info.willRetry && this.state !== "closed")
            this.#retry();
    }
    #retry() {
        const r = this.#r;
        const attempt = ++this.#attempt;
        // Full jitter: anywhere between 0 and the capped exponential delay, so that clients
        // dropped together (a server restart) do not come back together.
        const delay = Math.round(Math.random() * Math.min(r.maxDelay, r.initialDelay * r.factor ** (attempt - 1)));
        this.state = "reconnecting";
        this.#emit("reconnecting", { attempt, delay });
        // A listener may have closed the client.
        if (this.state === "reconnecting") {
            this.#waiting = true;
            this.#timer = setTimeout(() => this.#connect(), delay);
        }
    }
    /** Why the last attempt failed, when the server is a wsock server that says. */
    async #probe() {
        const url = new URL(this.#target());
        url.protocol = url.protocol.replace(/^ws/, "http");
        const page = globalThis.location;
        if (page && url.origin !== page.origin)
            return;
        const protocols = [].concat(this.#o.protocols ?? []);
        const headers = { "X-Wsock-Console": "probe" };
        if (protocols.length)
            headers["X-Wsock-Protocol"] = protocols.join(", ");
        try {
            const answer = await fetch(url, {
                headers,
                cache: "no-store",
                redirect: "manual",
                credentials: "same-origin",
                signal: AbortSignal.timeout(this.#o.connectTimeout ?? 10000),
            });
            const body = (await answer.text()).trim();
            if (answer.headers.get("X-Wsock-Console") === "probe" && !answer.ok) {
                return { status: answer.status, statusText: answer.statusText, body };
            }
        }
        catch {
            // Down, or not answering: a reason to retry, not a refusal.
        }
    }
    #stop() {
        clearTimeout(this.#timer);
        clearTimeout(this.#beat);
        this.#queue = [];
        globalThis.removeEventListener?.("online", this.#online);
    }
    #error(message, data, error) {
        this.#emit("error", { message, data, error });
    }
    #emit(type, event, position) {
        for (const listener of this.#on[type] ?? []) {
            try {
                listener(event, position);
            }
            catch (error) {
                // The other listeners still run; the error surfaces as an uncaught one.
                queueMicrotask(() => {
                    throw error;
                });
            }
        }
    }
}
/** Connects to a WebSocket endpoint and keeps it connected: see {@link Options}. A relative
 * `url` resolves against the page's location, `http:` and `https:` becoming `ws:` and `wss:`.
 * `Send` and `Receive` are the types of the messages sent and received. */
export function connect(url, options) {
    return new Client(url, options);
}
