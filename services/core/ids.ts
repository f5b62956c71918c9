import { randomBytes } from "node:crypto";

/**
 * Prefixed, time-sortable ids: `<prefix>_` + 12 hex digits of epoch milliseconds + 20 random hex
 * digits. Lexical order follows creation time, so ids double as pagination cursors. The SQL function
 * `evently_id(prefix)` (migration 0001) produces the same shape for rows created inside Postgres.
 */
export const ID_PREFIX = {
  application: "app",
  apiKey: "key",
  endpoint: "ep",
  route: "rt",
  event: "evt",
  job: "job",
  attempt: "att",
} as const;

export type IdKind = keyof typeof ID_PREFIX;

// Random bytes are drawn in blocks: one syscall serves many ids on the ingest hot path.
let pool = Buffer.alloc(0);
let poolOffset = 0;
function random10(): string {
  if (poolOffset + 10 > pool.length) {
    pool = randomBytes(10 * 1024);
    poolOffset = 0;
  }
  const hex = pool.toString("hex", poolOffset, poolOffset + 10);
  poolOffset += 10;
  return hex;
}

export function newId(kind: IdKind, now = Date.now()): string {
  return `${ID_PREFIX[kind]}_${now.toString(16).padStart(12, "0")}${random10()}`;
}

const ID_SHAPE = /^[a-z]+_[0-9a-f]{32}$/;

/** True when `value` is an id of `kind`; lets handlers answer 404 without a query for junk ids. */
export function isId(kind: IdKind, value: string): boolean {
  return value.startsWith(`${ID_PREFIX[kind]}_`) && ID_SHAPE.test(value);
}
