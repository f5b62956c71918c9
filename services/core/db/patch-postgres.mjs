// Applied by `npm install` / `npm ci` (root postinstall). Idempotent.
//
// postgres.js 3.4.x can write to a connection that was cut a moment before (database restart,
// failover, terminated backend): `nextWrite` dereferences a null socket from a setImmediate
// callback, an uncaught TypeError that ends the process (porsager/postgres#1066, #1154, #1208;
// fixes proposed in #1168, #1209, not released). A webhook platform must survive a database
// restart, so until a release carries the fix we apply the same guard: with no socket, fail the
// pending queries with CONNECTION_CLOSED (callers retry) instead of throwing.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const MARK = "/* evently: closed-socket guard */";
const ORIGINAL = "  function nextWrite(fn) {\n";
const GUARDED =
  ORIGINAL +
  `    ${MARK}\n` +
  "    if (socket === null) {\n" +
  "      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n" +
  "      chunk = nextWriteTimer = null\n" +
  "      error(Errors.connection('CONNECTION_CLOSED', options))\n" +
  "      return false\n" +
  "    }\n";

let root;
try {
  // The package's exports hide package.json; its CommonJS entry is <root>/cjs/src/index.js.
  root = dirname(dirname(dirname(createRequire(import.meta.url).resolve("postgres"))));
} catch {
  process.exit(0); // postgres not installed (yet): nothing to patch
}

let patched = 0;
for (const file of ["src/connection.js", "cjs/src/connection.js", "cf/src/connection.js"].map((f) => join(root, f))) {
  if (!existsSync(file)) continue;
  const source = readFileSync(file, "utf8");
  if (source.includes(MARK)) continue;
  if (!source.includes(ORIGINAL)) {
    console.warn(`patch-postgres: ${file} has changed shape; guard not applied (check whether the release fixed it)`);
    continue;
  }
  writeFileSync(file, source.replace(ORIGINAL, GUARDED));
  patched++;
}
if (patched > 0) console.log(`patch-postgres: guarded nextWrite in ${patched} file(s)`);
