import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RunningRoles } from "../../runtime.ts";
import { pollUntil } from "../support/poll.ts";
import { startReceiver, type Receiver } from "../support/receiver.ts";
import { createTestStack, describeEachTransport, type TestStack } from "../support/stack.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

// What "promptly" means for a 503 while the database is down (the goal is about a second).
const PROMPT_MS = 1500;

describeEachTransport("database outage", (transport) => {
  let stack: TestStack;
  let receiver: Receiver;
  let proxy: TcpProxy;
  let app: RunningRoles;

  beforeAll(async () => {
    receiver = startReceiver();
    stack = await createTestStack({ RETRY_SCHEDULE: "100ms,200ms,400ms" }, transport);
    const direct = new URL(stack.db.url);
    proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
    // Every role reaches Postgres through the proxy, so taking it down is this installation's outage alone.
    app = await stack.start("all", { DATABASE_URL: proxy.urlFor(stack.db.url) });
  });

  afterAll(async () => {
    await proxy.up().catch(() => {});
    await stack.stop();
    await proxy.stop();
    await receiver.stop();
  });

  test("while Postgres is unreachable the API answers 503 at once, and every event is delivered after", async () => {
    await stack.subscribe(app, `${receiver.url}/outage`, "outage.*");
    const answers: { status: number; code?: string; ms: number; down: boolean }[] = [];
    let down = false;
    let producing = true;

    // A producer as the README asks for: an idempotency key per event, 503s (and cut connections) retried.
    const produce = async (n: number): Promise<string> => {
      for (;;) {
        const started = performance.now();
        const wasDown = down;
        const res = await stack
          .api(app, "POST", "/events", { type: "outage.test", data: { n }, idempotencyKey: `outage-${transport}-${n}` })
          .catch(() => null);
        answers.push({ status: res?.status ?? 0, code: res?.body?.code, ms: performance.now() - started, down: wasDown || down });
        if (res?.status === 202) return res.body.id as string;
        await Bun.sleep(100);
      }
    };
    const producers: Promise<string>[] = [];
    const stream = (async () => {
      for (let n = 0; producing; n++) {
        producers.push(produce(n));
        await Bun.sleep(20);
      }
    })();

    await Bun.sleep(1000);
    down = true;
    await proxy.down();
    await Bun.sleep(1000);
    const readyStarted = performance.now();
    const ready = await fetch(`${app.url}/ready`);
    const readyMs = performance.now() - readyStarted;
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, boolean> }).checks.postgres).toBe(false);
    expect(readyMs).toBeLessThan(PROMPT_MS);
    // Reads too: a 503, not a hang or a 500.
    const readStarted = performance.now();
    const read = await stack.api(app, "GET", "/endpoints");
    const readMs = performance.now() - readStarted;
    console.log(`[${transport}] GET /endpoints while down: ${read.status} ${read.body?.code} in ${readMs.toFixed(0)} ms; /ready in ${readyMs.toFixed(0)} ms`);
    expect([read.status, read.body?.code]).toEqual([503, "unavailable"]);
    expect(readMs).toBeLessThan(PROMPT_MS * 2);
    await Bun.sleep(2000);
    await proxy.up();
    down = false;
    await Bun.sleep(1000);
    producing = false;
    await stream;
    const ids = await Promise.all(producers);

    const refused = answers.filter((a) => a.status !== 202);
    const duringOutage = answers.filter((a) => a.down);
    const slowest = Math.max(...duringOutage.map((a) => a.ms));
    console.log(`[${transport}] ${answers.length} answers, ${refused.length} refused (${[...new Set(refused.map((a) => a.status))].join(",")}); slowest during the outage ${slowest.toFixed(0)} ms`);
    // Refused only with a 503 `unavailable` (never a 500, never a hang), and refused at all: the circuit worked.
    expect([...new Set(refused.map((a) => `${a.status} ${a.code}`))]).toEqual(["503 unavailable"]);
    expect(slowest).toBeLessThan(PROMPT_MS);
    expect((await fetch(`${app.url}/ready`)).status).toBe(200);

    // Every key ended accepted exactly once, and every accepted event is delivered.
    const [counts] = await stack.sql<{ events: number; keys: number }[]>`
      select count(*)::int as events, count(distinct idempotency_key)::int as keys from events where type = 'outage.test'`;
    expect(counts).toEqual({ events: ids.length, keys: ids.length });
    await pollUntil(() => {
      const got = new Set(receiver.on("/outage").map((r) => JSON.parse(r.body).id as string));
      return ids.every((id) => got.has(id));
    }, { what: "every accepted event delivered after the outage", timeoutMs: 20_000 });
  }, 40_000);
});
