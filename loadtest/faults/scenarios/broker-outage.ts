import { Producer } from "../producer.ts";
import { check, settleAndCount, withStack, type Scenario } from "../scenario.ts";
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
  const name = "broker-outage[rabbitmq]";
  return {
    name,
    run: (log) =>
      withStack(
        { name, transport: "rabbitmq", workers: 1, env: { RETRY_SCHEDULE: "200ms,500ms,1s,2s,2s", AMQP_PUBLISH_GRACE_MS: "2000" } },
        log,
        async (stack, receivers) => {
          await stack.subscribe(`${receivers.url}/bo`, "faults.bo");
          const producer = new Producer({
            apiUrl: () => stack.apiUrl,
            appKey: stack.appKey,
            rate: RATE,
            durationMs: 20_000,
            type: () => "faults.bo",
            keyPrefix: name,
          }).start();
          await Bun.sleep(3000);
          await withHeal(startRabbitApp, async () => {
            await closeRabbitConnections("evently fault suite");
            log("closed every RabbitMQ connection");
            await Bun.sleep(2000);
            await stopRabbitApp();
            log(`RabbitMQ application stopped for ${BROKER_DOWN_MS / 1000} s`);
            await Bun.sleep(BROKER_DOWN_MS);
          });
          log("RabbitMQ application started again");
          const production = await producer.finish();
          const refused = production.answers.filter((a) => a.status !== 202);
          const slowest = Math.max(0, ...production.answers.map((a) => a.ms));
          log(`${production.answers.length} answers, ${refused.length} not 202; slowest answer ${slowest} ms`);
          const { tally, checks } = await settleAndCount(stack, receivers, production, log);
          const statuses = [...new Set(refused.map((a) => a.status))].join(",");
          return {
            name,
            tally,
            checks: [
              ...checks,
              check("the API answered 202 throughout", refused.length === 0, `${refused.length} other answers${statuses ? ` (${statuses})` : ""}`),
              check("everything accepted was delivered", tally.delivered === tally.accepted, `${tally.delivered} of ${tally.accepted}`),
            ],
          };
        },
      ),
  };
}
