// Checks what `npm publish` would upload: exactly the built client, its types, the readme, the
// licenses (copies of the repository's own) and package.json; nothing else (no sources, tests,
// scripts or node_modules) and nothing missing. Run after `npm run build`.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const INTENDED = [
  "LICENSE-APACHE",
  "LICENSE-MIT",
  "README.md",
  "dist/index.d.ts",
  "dist/index.js",
  "package.json",
];

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
// --ignore-scripts: the build ran before; a lifecycle script's output would not be JSON.
const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
  cwd: here(".."),
  encoding: "utf8",
});
const [pack] = JSON.parse(out);
const files = pack.files.map((file) => file.path).sort();

const extra = files.filter((path) => !INTENDED.includes(path));
const missing = INTENDED.filter((path) => !files.includes(path));
let failed = false;
if (extra.length > 0 || missing.length > 0) {
  console.error(`npm pack would publish ${JSON.stringify(files)}`);
  if (extra.length > 0) console.error(`  not intended: ${extra.join(", ")}`);
  if (missing.length > 0) console.error(`  missing: ${missing.join(", ")}`);
  failed = true;
}
for (const license of ["LICENSE-MIT", "LICENSE-APACHE"]) {
  if (readFileSync(here(`../${license}`), "utf8") !== readFileSync(here(`../../${license}`), "utf8")) {
    console.error(`client/${license} differs from the repository's ${license}: copy it over`);
    failed = true;
  }
}
if (failed) process.exit(1);
console.log(`npm pack: ${pack.filename}, ${files.length} files, ${pack.size} bytes packed: ${files.join(", ")}`);
