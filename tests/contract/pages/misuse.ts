// A page that misuses the generated types: each line marked with the error code must fail to
// compile there, and nothing else may fail (tests/contract.rs).
import { connectJoin } from "../rooms.js";
import { connectTodo } from "../json.js";

const todo = connectTodo();
todo.send({ op: "add", txt: "renamed field" }); // error TS2561
todo.send({ op: "done", id: "1" }); // error TS2322
todo.on("message", (reply) => {
  if ("added" in reply) console.log(reply.added.title); // error TS2339
});
connectJoin({ room: "lobby" }); // error TS2345
