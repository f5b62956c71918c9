import { expect, test } from "bun:test";
import { startPeer } from "../../../loadtest/peers/launch.ts";
import { PEER_NAMES } from "../../../loadtest/peers/peer.ts";
import { startSink } from "../../../loadtest/sink/server.ts";
import { generateSecret } from "../../core/signing/index.ts";

// The benchmark's peers (loadtest/peers), each as its own producer and worker processes on a queue
// of its own: the local Postgres for graphile-worker, the local Redis for BullMQ.

const post = (url: string, body: unknown) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

for (const peer of PEER_NAMES)
  test(`${peer}: delivers every event posted once with a valid signature, retries a failed attempt, and leaves nothing on the server`, async () => {
    const sink = startSink({ port: 0 });
    const secret = generateSecret();
    sink.addSecret(secret, "peer");
    const running = await startPeer({ peer, endpoints: [{ id: "ep_test", url: `${sink.url}/hooks/peer`, secret }] });
    try {
      const event = { type: "test.order.paid", data: { amount: 42 } };
      const singles = await Promise.all(Array.from({ length: 10 }, () => post(`${running.url}/events`, event)));
      expect(singles.map((r) => r.status)).toEqual(Array(10).fill(202));
      const batch = await post(`${running.url}/events/batch`, { events: Array(40).fill(event) });
      expect(batch.status).toBe(202);
      expect(((await batch.json()) as { data: unknown[] }).data).toHaveLength(40);
      const delivered = await sink.waitFor({ unique: 50, timeoutMs: 8000 });
      expect(delivered).toMatchObject({ unique: 50, duplicates: 0, invalid: 0, unverified: 0 });
      expect(delivered.latencyMs.count).toBe(50);

      // Every first attempt now fails: the queue's own retry delivers each event on the second.
      sink.reset();
      sink.setFaults({ failFirst: 1, status: 503 });
      expect((await post(`${running.url}/events/batch`, { events: Array(3).fill(event) })).status).toBe(202);
      const retried = await sink.waitFor({ unique: 3, timeoutMs: 9000 });
      expect(retried).toMatchObject({ unique: 3, duplicates: 0, invalid: 0, injectedFailures: 3 });
    } finally {
      await running.stop();
      await sink.stop();
    }
    expect(await running.queue.leftovers()).toBe(0);
  }, 30_000);
