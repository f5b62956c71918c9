import { stall } from "../receivers.ts";
import { check, streamedFault, type Scenario } from "../scenario.ts";
import type { Transport } from "../stack.ts";

// The promise worker leases make (services/worker/delivery/leases.ts).
const RECOVERY_BOUND_MS = 15_000;
const RATE = 120;
// 200 ms per delivery: ~24 in flight at once, within what one worker takes per endpoint (32), so the
// survivor keeps up alone and the recovery measured is the lease's, not a backlog's.
const RECEIVER_MS = 200;

/**
 * Two workers share a steady stream at a receiver that takes 200 ms per delivery, so each holds
 * a dozen deliveries at any moment. One is SIGKILLed mid-stream and started again later. The jobs
 * it was delivering must reach the receiver within 15 s of the kill, with the product's defaults
 * for leases, sweeps and polls.
 */
export function workerKill(transport: Transport): Scenario {
  return streamedFault({
    name: `worker-kill[${transport}]`,
    stack: { transport, workers: 2, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s" } },
    path: "/wk",
    endpoint: { timeoutMs: 10_000 },
    receive: async (req) => {
      await stall(req, RECEIVER_MS);
      return new Response("ok");
    },
    stream: { rate: RATE, durationMs: 12_000 },
    faultAfterMs: 4000,
    async fault({ stack, receivers, log }) {
      const victim = stack.roles.get("worker-1")!;
      await stack.kill("worker-1", "SIGKILL");
      const killedAt = Date.now();
      // Right after the kill, what is `delivering` is the dead worker's (stuck) and the survivor's (finishing).
      const inFlight = (await stack.sql<{ id: string }[]>`select id from jobs where status = 'delivering'`).map((r) => r.id);
      log(`killed worker-1 (pid ${victim.pid}) with ${inFlight.length} jobs delivering across both workers`);
      await Bun.sleep(8000);
      await stack.start("worker-1");
      log("worker-1 started again");

      const deadline = killedAt + RECOVERY_BOUND_MS + 20_000;
      let recoveredAt = 0;
      while (Date.now() < deadline) {
        const [row] = await stack.sql<{ open: number; last: Date | null }[]>`
          select count(*) filter (where status <> 'delivered')::int as open, max(delivered_at) as last
          from jobs where id = any (${inFlight}::text[])`;
        if (row!.open === 0) {
          recoveredAt = row!.last?.getTime() ?? killedAt;
          break;
        }
        await Bun.sleep(200);
      }
      const recoveryMs = recoveredAt ? recoveredAt - killedAt : Number.POSITIVE_INFINITY;
      // The dead worker's deliveries were cut off mid-request: the receiver saw them, unanswered.
      const cutOff = new Set(receivers.at("/wk").filter((r) => !r.answered && r.receivedAt < killedAt).map((r) => r.webhookId));
      const victims = inFlight.filter((id) => cutOff.has(id)).length;
      log(`jobs in flight at the kill delivered ${(recoveryMs / 1000).toFixed(1)} s after it (${victims} of them cut off at the receiver)`);
      return { victims, recoveryMs };
    },
    checks: ({ fault: { victims, recoveryMs } }) => [
      check("the killed worker had deliveries in flight", victims > 0, `${victims} deliveries cut off by the kill`),
      check(`its in-flight jobs delivered within ${RECOVERY_BOUND_MS / 1000} s of the kill`, recoveryMs < RECOVERY_BOUND_MS, `${(recoveryMs / 1000).toFixed(1)} s`),
    ],
  });
}
