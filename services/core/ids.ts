import { randomBytes } from "node:crypto";

/**
 * Prefixed, time-sortable ids: `<prefix>_` + 12 hex digits of epoch milliseconds + 20 random hex
 * digits. Lexical order follows creation time, so ids double as pagination cursors. The SQL
 * function `evently_id(prefix)` (migrations 0001, 0015) produces the same shape for rows created
 * inside Postgres (job ids).
 */
export const ID_PREFIX = {
  application: "app",
  apiKey: "key",
  endpoint: "ep",
  route: "rt",
  event: "evt",
  job: "job",
  attempt: "att",
  operation: "op",
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

// The last id's time and random part: ids made in one millisecond count up from a random start,
// so a process's ids increase in the order it made them (a batch's events keep their order, which
// FIFO endpoints deliver by) and stay unguessable between milliseconds.
let lastMs = -1;
let lastRandom = 0n;
const RANDOM_LIMIT = 1n << 80n;

export function newId(kind: IdKind, now = Date.now()): string {
  // A time behind the last id's (a clock step back, an older timestamp given) counts on from it.
  if (now <= lastMs && lastRandom + 1n < RANDOM_LIMIT) {
    lastRandom += 1n;
  } else {
    lastMs = Math.max(now, lastMs + 1);
    lastRandom = BigInt(`0x${random10()}`) >> 1n; // top bit clear: room to count up
  }
  return `${ID_PREFIX[kind]}_${lastMs.toString(16).padStart(12, "0")}${lastRandom.toString(16).padStart(20, "0")}`;
}

const ID_SHAPE = /^[a-z]+_[0-9a-f]{32}$/;

/** True when `value` is an id of `kind`; lets handlers answer 404 without a query for junk ids. */
export function isId(kind: IdKind, value: string): boolean {
  return value.startsWith(`${ID_PREFIX[kind]}_`) && ID_SHAPE.test(value);
}
