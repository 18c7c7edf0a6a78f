// Checks the contract's AsyncAPI documents, for tests/contract.rs.
//
//   node contract.mjs validate DOC.json...      each document through the AsyncAPI project's
//                                               parser: exit 1 on any error diagnostic
//   node contract.mjs samples DOC.json SAMPLES.json
//                                               each sample ({ message, value }) against its
//                                               message's payload schema, with ajv: exit 1 on
//                                               any sample that does not match
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import Ajv from "ajv";

const [mode, ...files] = process.argv.slice(2);
let failed = false;

if (mode === "validate") {
  const parser = new Parser();
  for (const file of files) {
    const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
    // 0: error, 1: warning, 2: information, 3: hint.
    const errors = diagnostics.filter((d) => d.severity === 0);
    for (const d of diagnostics) {
      const level = ["error", "warning", "info", "hint"][d.severity];
      console.log(`${file}: ${level}: ${d.message} at /${d.path.join("/")}`);
    }
    if (document === undefined || errors.length > 0) {
      failed = true;
      console.log(`${file}: INVALID (${errors.length} errors)`);
    } else {
      console.log(`${file}: valid (${diagnostics.length} diagnostics, 0 errors)`);
    }
  }
} else if (mode === "samples") {
  const doc = JSON.parse(readFileSync(files[0], "utf8"));
  const samples = JSON.parse(readFileSync(files[1], "utf8"));
  // The payloads' `$ref`s point at #/components/schemas/..: each schema carries them along.
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  let ok = 0;
  for (const [i, { message, value }] of samples.entries()) {
    const payload = doc.components.messages[message]?.payload;
    if (payload === undefined) {
      failed = true;
      console.log(`sample ${i}: no message ${message}`);
      continue;
    }
    const validate = ajv.compile({ ...payload, components: { schemas: doc.components.schemas } });
    if (validate(value)) {
      ok += 1;
    } else {
      failed = true;
      const why = validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
      console.log(`sample ${i} (${message}) does not match: ${why}: ${JSON.stringify(value)}`);
    }
  }
  console.log(`${ok} of ${samples.length} samples match their schemas`);
} else {
  console.log("usage: contract.mjs validate DOC.. | samples DOC SAMPLES");
  failed = true;
}
process.exit(failed ? 1 : 0);
