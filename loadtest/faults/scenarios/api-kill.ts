import { allDelivered, check, oneEventPerKey, streamedFault, type Scenario } from "../scenario.ts";
import type { Transport } from "../stack.ts";

const RATE = 150;

/**
 * The API is SIGKILLed mid-stream and started again on the same port. Producers retry lost
 * connections and 5xx with their idempotency keys. Every 202 must name an event that is committed
 * (a 202 is sent only after commit), none is lost, and no key makes two events.
 */
export function apiKill(transport: Transport): Scenario {
  return streamedFault({
    name: `api-kill[${transport}]`,
    stack: { transport, workers: 1, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s", QUEUE_POLL_INTERVAL_MS: "250" } },
    path: "/ak",
    stream: { rate: RATE, durationMs: 10_000, retryOn: (a) => a.status <= 0 || a.status >= 500 || a.status === 429 },
    faultAfterMs: 4000,
    async fault({ stack, log }) {
      const killedAt = Date.now();
      await stack.kill("api", "SIGKILL");
      log("api SIGKILLed");
      await Bun.sleep(500);
      await stack.start("api");
      log(`api started again ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`);
    },
    async checks({ stack, production, tally }) {
      const refused = production.answers.filter((a) => a.status !== 202);
      const ids = [...new Set(production.accepted.map((a) => a.id))];
      const [stored] = await stack.sql<{ n: number }[]>`select count(*)::int as n from events where id = any (${ids}::text[])`;
      const [all] = await stack.sql<{ events: number }[]>`select count(*)::int as events from events`;
      return [
        check("requests were cut by the kill", refused.length > 0, `${refused.length}`),
        check("every 202 names a committed event", stored!.n === ids.length, `${stored!.n} of ${ids.length} in events`),
        await oneEventPerKey(stack, production),
        check("no event beyond those accepted", all!.events === ids.length, `${all!.events} events stored for ${ids.length} accepted`),
        allDelivered(tally),
      ];
    },
  });
}
