import { Producer } from "../producer.ts";
import { check, settleAndCount, withStack, type Scenario } from "../scenario.ts";
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
  const name = `postgres-restart[${transport}]`;
  return {
    name,
    run: (log) =>
      withStack({ name, transport, workers: 1, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s", QUEUE_POLL_INTERVAL_MS: "250" } }, log, async (stack, receivers) => {
        await stack.subscribe(`${receivers.url}/pr`, "faults.pr");
        const producer = new Producer({
          apiUrl: () => stack.apiUrl,
          appKey: stack.appKey,
          rate: RATE,
          durationMs: 16_000,
          type: () => "faults.pr",
          keyPrefix: name,
          giveUpAfterMs: 90_000,
        }).start();
        await Bun.sleep(3000);
        let stoppedAt = 0;
        let startedAt = 0;
        await withHeal(startPostgres, async () => {
          await stopPostgres();
          stoppedAt = Date.now();
          log(`postgres stopped; up again in ${DOWN_MS / 1000} s`);
          await Bun.sleep(DOWN_MS);
        });
        startedAt = Date.now();
        log(`postgres started again (${((startedAt - stoppedAt) / 1000).toFixed(1)} s down)`);
        const production = await producer.finish();

        const refused = production.answers.filter((a) => a.status !== 202);
        const errors = refused.filter((a) => a.status >= 500 && a.status !== 503);
        const notUnavailable = refused.filter((a) => a.status === 503 && a.code !== "unavailable" && a.code !== "overloaded");
        const failedConnections = refused.filter((a) => a.status <= 0);
        const slowRefusal = Math.max(0, ...refused.map((a) => a.ms));
        const slowest = Math.max(0, ...production.answers.map((a) => a.ms));
        const during = production.answers.filter((a) => a.sentAt >= stoppedAt && a.sentAt < startedAt);
        log(
          `${production.answers.length} answers, ${refused.length} refused (${summarise(refused.map((a) => a.status))}); ` +
            `slowest refusal ${slowRefusal} ms, slowest answer ${slowest} ms; ${during.length} requests while postgres was down`,
        );
        const { tally, checks } = await settleAndCount(stack, receivers, production, log, 60_000);
        const [keys] = await stack.sql<{ twice: number }[]>`
          select count(*)::int as twice from (select idempotency_key from events group by 1 having count(*) > 1) k`;
        return {
          name,
          tally,
          checks: [
            ...checks,
            check("the API refused while postgres was down", during.some((a) => a.status === 503), `${during.filter((a) => a.status === 503).length} answers 503 while down`),
            check("no 500 (nor any 5xx but 503)", errors.length === 0, `${errors.length}`),
            check("every 503 says unavailable", notUnavailable.length === 0, `${notUnavailable.length} other codes`),
            check("no failed connection or timeout", failedConnections.length === 0, `${failedConnections.length}`),
            check(`no answer slower than ${SLOWEST_ALLOWED_MS} ms`, slowest <= SLOWEST_ALLOWED_MS, `slowest ${slowest} ms (non-202: ${slowRefusal} ms)`),
            check("one event per idempotency key", keys!.twice === 0 && production.conflictingKeys.length === 0, `${keys!.twice} keys stored twice, ${production.conflictingKeys.length} answered with two ids`),
            check("everything accepted was delivered", tally.delivered === tally.accepted, `${tally.delivered} of ${tally.accepted}`),
          ],
        };
      }),
  };
}

export function summarise(statuses: number[]): string {
  const counts = new Map<number, number>();
  for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${s}×${n}`).join(", ") || "none";
}
