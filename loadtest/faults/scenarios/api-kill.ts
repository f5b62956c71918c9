import { Producer } from "../producer.ts";
import { check, settleAndCount, withStack, type Scenario } from "../scenario.ts";
import type { Transport } from "../stack.ts";
import { summarise } from "./postgres-restart.ts";

const RATE = 150;

/**
 * The API is SIGKILLed mid-stream and started again on the same port. Producers retry lost
 * connections and 5xx with their idempotency keys. Every 202 must name an event that is committed
 * (a 202 is sent only after commit), none is lost, and no key makes two events.
 */
export function apiKill(transport: Transport): Scenario {
  const name = `api-kill[${transport}]`;
  return {
    name,
    run: (log) =>
      withStack({ name, transport, workers: 1, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s", QUEUE_POLL_INTERVAL_MS: "250" } }, log, async (stack, receivers) => {
        await stack.subscribe(`${receivers.url}/ak`, "faults.ak");
        const producer = new Producer({
          apiUrl: () => stack.apiUrl,
          appKey: stack.appKey,
          rate: RATE,
          durationMs: 10_000,
          type: () => "faults.ak",
          keyPrefix: name,
          retryOn: (a) => a.status <= 0 || a.status >= 500 || a.status === 429,
        }).start();
        await Bun.sleep(4000);
        const killedAt = Date.now();
        await stack.kill("api", "SIGKILL");
        log("api SIGKILLed");
        await Bun.sleep(500);
        await stack.start("api");
        log(`api started again ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`);
        const production = await producer.finish();
        const refused = production.answers.filter((a) => a.status !== 202);
        log(`${production.answers.length} answers, ${refused.length} refused or cut (${summarise(refused.map((a) => a.status))})`);

        const ids = [...new Set(production.accepted.map((a) => a.id))];
        const [stored] = await stack.sql<{ n: number }[]>`select count(*)::int as n from events where id = any (${ids}::text[])`;
        const [keys] = await stack.sql<{ twice: number; events: number }[]>`
          select (select count(*)::int from (select idempotency_key from events group by 1 having count(*) > 1) k) as twice,
                 (select count(*)::int from events) as events`;
        const { tally, checks } = await settleAndCount(stack, receivers, production, log);
        return {
          name,
          tally,
          checks: [
            ...checks,
            check("requests were cut by the kill", refused.length > 0, `${refused.length}`),
            check("every 202 names a committed event", stored!.n === ids.length, `${stored!.n} of ${ids.length} in events`),
            check("one event per idempotency key", keys!.twice === 0 && production.conflictingKeys.length === 0, `${keys!.twice} keys stored twice, ${production.conflictingKeys.length} answered with two ids`),
            check("no event beyond those accepted", keys!.events === ids.length, `${keys!.events} events stored for ${ids.length} accepted`),
            check("everything accepted was delivered", tally.delivered === tally.accepted, `${tally.delivered} of ${tally.accepted}`),
          ],
        };
      }),
  };
}
