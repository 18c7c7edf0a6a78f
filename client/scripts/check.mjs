// Checks the build: the JavaScript the Rust server embeds (runtime/src/client.js) must be what
// the TypeScript sources build (dist/index.js), and the minified, gzipped client must stay
// within its size budget. Run after `npm run build`; `--write` copies the build over the
// embedded file instead of comparing.
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const BUDGET = 4096;
const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const built = readFileSync(here("../dist/index.js"), "utf8");
const embedded = here("../../runtime/src/client.js");

if (process.argv.includes("--write")) {
  writeFileSync(embedded, built);
  console.log("runtime/src/client.js written from dist/index.js");
} else if (readFileSync(embedded, "utf8") !== built) {
  console.error(
    "runtime/src/client.js differs from what client/src builds: run `npm run embed --prefix client` and commit it",
  );
  process.exit(1);
} else {
  console.log("runtime/src/client.js is what client/src builds");
}

const minified = await build({
  entryPoints: [here("../dist/index.js")],
  bundle: true,
  minify: true,
  format: "esm",
  write: false,
});
const bytes = minified.outputFiles[0].contents;
const gzipped = gzipSync(bytes, { level: 9 }).length;
console.log(`client size: ${built.length} bytes built, ${bytes.length} minified, ${gzipped} minified and gzipped (budget ${BUDGET})`);
if (gzipped > BUDGET) {
  console.error(`the minified and gzipped client is ${gzipped} bytes, over its budget of ${BUDGET}`);
  process.exit(1);
}
