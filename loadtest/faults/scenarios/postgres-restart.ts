import { allDelivered, check, oneEventPerKey, streamedFault, type Scenario } from "../scenario.ts";
import { startPostgres, stopPostgres, withHeal } from "../services.ts";
import type { Transport } from "../stack.ts";

const RATE = 100;
const DOWN_MS = 5000;
// "Promptly": the API's database circuit answers 503 without waiting (core/db/health.ts).
const SLOWEST_ALLOWED_MS = 2000;

/**
 * Postgres is stopped under a steady stream and started 5 s later. While it is down the API must
 * answer 503 `unavailable` at once, never a 500 and never hang; producers retry with their
 * idempotency keys, so every event is accepted in the end, none twice; workers (and the dispatcher)
 * resume by themselves and everything accepted is delivered.
 */
export function postgresRestart(transport: Transport): Scenario {
  return streamedFault({
    name: `postgres-restart[${transport}]`,
    stack: { transport, workers: 1, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s", QUEUE_POLL_INTERVAL_MS: "250" } },
    path: "/pr",
    stream: { rate: RATE, durationMs: 16_000, giveUpAfterMs: 90_000 },
    faultAfterMs: 3000,
    settleTimeoutMs: 60_000,
    async fault({ log }) {
      let stoppedAt = 0;
      await withHeal(startPostgres, async () => {
        await stopPostgres();
        stoppedAt = Date.now();
        log(`postgres stopped; up again in ${DOWN_MS / 1000} s`);
        await Bun.sleep(DOWN_MS);
      });
      const startedAt = Date.now();
      log(`postgres started again (${((startedAt - stoppedAt) / 1000).toFixed(1)} s down)`);
      return { stoppedAt, startedAt };
    },
    async checks({ stack, production, tally, fault: { stoppedAt, startedAt } }) {
      const refused = production.answers.filter((a) => a.status !== 202);
      const errors = refused.filter((a) => a.status >= 500 && a.status !== 503);
      const notUnavailable = refused.filter((a) => a.status === 503 && a.code !== "unavailable" && a.code !== "overloaded");
      const failedConnections = refused.filter((a) => a.status <= 0);
      const slowRefusal = Math.max(0, ...refused.map((a) => a.ms));
      const slowest = Math.max(0, ...production.answers.map((a) => a.ms));
      const during = production.answers.filter((a) => a.sentAt >= stoppedAt && a.sentAt < startedAt);
      const refusedDuring = during.filter((a) => a.status === 503).length;
      return [
        check("the API refused while postgres was down", refusedDuring > 0, `${refusedDuring} answers 503 of ${during.length} requests while down`),
        check("no 500 (nor any 5xx but 503)", errors.length === 0, `${errors.length}`),
        check("every 503 says unavailable", notUnavailable.length === 0, `${notUnavailable.length} other codes`),
        check("no failed connection or timeout", failedConnections.length === 0, `${failedConnections.length}`),
        check(`no answer slower than ${SLOWEST_ALLOWED_MS} ms`, slowest <= SLOWEST_ALLOWED_MS, `slowest ${slowest} ms (non-202: ${slowRefusal} ms)`),
        await oneEventPerKey(stack, production),
        allDelivered(tally),
      ];
    },
  });
}
