import { expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { generateSecret } from "../../core/signing/index.ts";
import { startSinkProcess } from "../../../loadtest/sink/process.ts";
import { cpuPerDelivery } from "../../../loadtest/bench/report.ts";
import type { PhaseResult } from "../../../loadtest/bench/phases.ts";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function signed(secret: string, id: string): { headers: Record<string, string>; body: string } {
  const sentAt = new Date();
  const body = JSON.stringify({ id: `evt_${id}`, type: "bench.order.paid", timestamp: sentAt.toISOString(), data: {} });
  return {
    body,
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(sentAt.getTime() / 1000)),
      "webhook-signature": new Webhook(secret).sign(id, sentAt, body),
    },
  };
}

// The bench's sink runs apart from the generator, so each one's CPU is read from /proc on its own.
test("the sink process verifies deliveries with the secrets it is given, and answers the bench's waits", async () => {
  // Sink settings in the bench's environment (faults, here every delivery failed) do not reach it.
  process.env.SINK_FAIL_RATE = "1";
  const sink = await startSinkProcess().finally(() => delete process.env.SINK_FAIL_RATE);
  try {
    expect(sink.pid).not.toBe(process.pid);
    expect(alive(sink.pid)).toBe(true);
    const secret = generateSecret();
    await sink.addSecret(secret, "bench");

    const good = signed(secret, "job_1");
    expect((await fetch(`${sink.url}/hooks/bench`, { method: "POST", ...good })).status).toBe(204);
    const forged = signed(generateSecret(), "job_2");
    expect((await fetch(`${sink.url}/hooks/bench`, { method: "POST", ...forged })).status).toBe(401);

    const reached = await sink.waitFor({ unique: 1, timeoutMs: 5000 });
    expect(reached.unique).toBe(1);
    expect(reached.invalid).toBe(1);
    // A wait that is not met ends at its timeout with what arrived.
    const started = Date.now();
    expect((await sink.waitFor({ unique: 2, timeoutMs: 300 })).unique).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);

    expect((await sink.reset()).unique).toBe(1);
    expect((await sink.stats()).unique).toBe(0);
  } finally {
    await sink.stop();
  }
  expect(alive(sink.pid)).toBe(false);
});

test("CPU per delivery counts the generator and the sink apart from the stack", () => {
  const phase = {
    transport: "postgres",
    spec: { name: "latency-1000" },
    delivery: { unique: 1000 },
    cpu: { total: { cpuSeconds: { api: 0.3, worker: 0.2, postgres: 0.4, bench: 0.15, sink: 0.1, other: 0.05 } } },
  } as unknown as PhaseResult;
  const c = cpuPerDelivery(phase)!;
  expect(c.stack).toBe(0.9);
  expect(c.perGroup).toEqual({ api: 0.3, worker: 0.2, postgres: 0.4, bench: 0.15, sink: 0.1 });
});
