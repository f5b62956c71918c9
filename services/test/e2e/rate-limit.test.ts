import { beforeAll, expect, test } from "bun:test";
import type { RunningRoles } from "../../runtime.ts";
import { TEST_ADMIN_KEY } from "../support/keys.ts";
import { useTestStack } from "../support/stack.ts";

/**
 * The per-application ingest limit is held across API processes: two API roles, each with its own
 * connection pool and limiter, share one application's budget through Postgres. Hammered together,
 * they admit at most the limit over the run, within 10% (the bound), and most of it.
 */
const LIMIT = 200;
const SECONDS = 3;
const CONCURRENCY_PER_API = 16;

// The transport does not matter here (nothing is delivered); Postgres needs no broker objects.
const e2e = useTestStack("postgres", {}, ["api", "api"]);
let key: string;

beforeAll(async () => {
  const admin = { authorization: `Bearer ${TEST_ADMIN_KEY}` };
  const app = await e2e.api("POST", "/applications", { name: "limited", rateLimitPerSecond: LIMIT }, admin);
  key = (await e2e.api("POST", `/applications/${app.body.id}/api-keys`, { name: "k" }, admin)).body.key;
}, 30_000);

test(`two API processes together admit at most ${LIMIT}/s within 10%, and refuse the rest with 429 and Retry-After`, async () => {
  const counts = { accepted: 0, refused: 0, other: 0 };
  let retryAfterOk = true;
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  const hammer = async (api: RunningRoles) => {
    while (performance.now() < deadline) {
      const res = await fetch(`${api.url}/events`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ type: "limited.x", data: {} }),
      });
      await res.arrayBuffer();
      if (res.status === 202) counts.accepted++;
      else if (res.status === 429) {
        counts.refused++;
        if (!(Number(res.headers.get("retry-after")) >= 1)) retryAfterOk = false;
        // A polite client waits a little; the limit must hold either way.
        await Bun.sleep(5);
      } else counts.other++;
    }
  };
  await Promise.all(e2e.roles.flatMap((api) => Array.from({ length: CONCURRENCY_PER_API }, () => hammer(api))));
  const elapsed = (performance.now() - started) / 1000;
  const allowed = LIMIT * elapsed;
  console.log(`rate limit: ${counts.accepted} accepted, ${counts.refused} refused in ${elapsed.toFixed(2)} s (limit ${LIMIT}/s: ${allowed.toFixed(0)})`);

  expect(counts.other).toBe(0);
  expect(counts.refused).toBeGreaterThan(0);
  expect(retryAfterOk).toBe(true);
  expect(counts.accepted).toBeLessThanOrEqual(allowed * 1.1);
  expect(counts.accepted).toBeGreaterThanOrEqual(allowed * 0.8);
  // What was admitted is what was written.
  const [row] = await e2e.sql<{ n: number }[]>`select count(*)::int as n from events where type = 'limited.x'`;
  expect(row!.n).toBe(counts.accepted);
}, 30_000);
