// A page that uses the examples' generated types as they are: compiles with `tsc --strict`.
import { connectJoin } from "../rooms.js";
import { connectTodo, type Reply } from "../json.js";
import { connectShapes, type Envelope } from "../shapes.js";

const todo = connectTodo({ base: "ws://127.0.0.1:9000" });
todo.send({ op: "add", text: "buy milk" });
todo.send({ op: "done", id: 1 });
todo.on("message", (reply: Reply) => {
  if ("added" in reply) console.log(reply.added.text, reply.added.done);
  if ("error" in reply) console.log(reply.error.toUpperCase());
});

const seat = connectJoin({ room: "lobby", seat: 3 });
seat.send("hello");
seat.on("message", (text) => console.log(text.length));

const envelope: Envelope = {
  profile: { displayName: "Ada", ageYears: null },
  shape: { kind: "circle", radius: 1.5 },
  id: 7,
  data: { tuple: [1, "one"] },
  adjacent: { t: "b", c: { s: "x" } },
  list: ["a", 2],
  map: { a: 1 },
};
const shapes = connectShapes({ room: "r", query: { limit: 3 } });
shapes.send(envelope);
shapes.on("message", (e) => console.log(e.profile.displayName, e.maybe?.kind));
