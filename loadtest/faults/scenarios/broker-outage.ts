import { allDelivered, check, streamedFault, type Scenario } from "../scenario.ts";
import { closeRabbitConnections, startRabbitApp, stopRabbitApp, withHeal } from "../services.ts";

const RATE = 150;
const BROKER_DOWN_MS = 10_000;

/**
 * RabbitMQ transport only. Under a steady stream, every broker connection is closed, then the
 * broker application is stopped for 10 s and started again. Commit does not need the broker, so the
 * API keeps answering 202 throughout (events wait in the outbox); afterwards the API, dispatcher
 * and worker reconnect by themselves and everything is delivered.
 */
export function brokerOutage(): Scenario {
  return streamedFault({
    name: "broker-outage[rabbitmq]",
    stack: { transport: "rabbitmq", workers: 1, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s", AMQP_PUBLISH_GRACE_MS: "2000" } },
    path: "/bo",
    stream: { rate: RATE, durationMs: 20_000 },
    faultAfterMs: 3000,
    async fault({ log }) {
      await withHeal(startRabbitApp, async () => {
        await closeRabbitConnections("evently fault suite");
        log("closed every RabbitMQ connection");
        await Bun.sleep(2000);
        await stopRabbitApp();
        log(`RabbitMQ application stopped for ${BROKER_DOWN_MS / 1000} s`);
        await Bun.sleep(BROKER_DOWN_MS);
      });
      log("RabbitMQ application started again");
    },
    checks({ production, tally }) {
      const refused = production.answers.filter((a) => a.status !== 202);
      const statuses = [...new Set(refused.map((a) => a.status))].join(",");
      return [
        check("the API answered 202 throughout", refused.length === 0, `${refused.length} other answers${statuses ? ` (${statuses})` : ""}`),
        allDelivered(tally),
      ];
    },
  });
}
