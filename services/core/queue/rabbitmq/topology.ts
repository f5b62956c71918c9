import type { Channel } from "amqplib";
import type { Config } from "../../config/index.ts";

/**
 * Names and declaration of every RabbitMQ object Evently uses.
 *
 * - `<prefix>.deliveries` (direct exchange) routes job messages to N work queues by routing key
 *   `0..N-1`; the publisher picks the queue from the endpoint id, so one endpoint's jobs stay on one
 *   queue and the work spreads over N queue processes.
 * - `<prefix>.deliveries.<n>` are durable work queues (quorum by default, classic selectable).
 *   A message a worker cannot read is rejected and dead-lettered.
 * - `<prefix>.dead` (fanout exchange + queue) keeps dead-lettered messages for inspection.
 * - `<prefix>.dead-letters` (topic exchange, no queue of ours) announces dead jobs: one JSON notice
 *   per job that ended `dead` ({jobId, eventId, endpointId, appId, eventType, endReason,
 *   attemptCount, deadAt}), routing key its event type, published with confirms by the dispatcher
 *   from the outbox. Consumers bind their own durable queue (to `#`, or `order.*`-style keys); with
 *   no queue bound, notices are dropped by the broker, as a topic exchange does.
 *
 * Retry timing lives in Postgres, not in broker TTL queues: a failed job becomes `scheduled` with
 * its due time and the dispatcher republishes it when due, so any schedule works and a retry
 * survives the loss of a broker node.
 */
export interface Topology {
  exchange: string;
  deadExchange: string;
  deadQueue: string;
  /** Where dead jobs are announced (not where unreadable messages go: that is deadExchange). */
  deadLetterExchange: string;
  workQueues: string[];
}

export function topologyFor(config: Config["queue"]): Topology {
  const p = config.AMQP_PREFIX;
  return {
    exchange: `${p}.deliveries`,
    deadExchange: `${p}.dead`,
    deadQueue: `${p}.dead`,
    deadLetterExchange: `${p}.dead-letters`,
    workQueues: Array.from({ length: config.AMQP_WORK_QUEUES }, (_, i) => `${p}.deliveries.${i}`),
  };
}

export async function declareTopology(channel: Channel, config: Config["queue"]): Promise<Topology> {
  const t = topologyFor(config);
  const queueType = { "x-queue-type": config.AMQP_QUEUE_TYPE };
  await channel.assertExchange(t.exchange, "direct", { durable: true });
  await channel.assertExchange(t.deadExchange, "fanout", { durable: true });
  await channel.assertQueue(t.deadQueue, { durable: true, arguments: queueType });
  await channel.bindQueue(t.deadQueue, t.deadExchange, "");
  await channel.assertExchange(t.deadLetterExchange, "topic", { durable: true });
  for (const [index, queue] of t.workQueues.entries()) {
    await channel.assertQueue(queue, {
      durable: true,
      arguments: { ...queueType, "x-dead-letter-exchange": t.deadExchange },
    });
    await channel.bindQueue(queue, t.exchange, String(index));
  }
  return t;
}

/** Deletes everything declareTopology made; tests use it to clean up their own prefix. */
export async function deleteTopology(channel: Channel, config: Config["queue"]): Promise<void> {
  const t = topologyFor(config);
  for (const q of [...t.workQueues, t.deadQueue]) await channel.deleteQueue(q);
  for (const x of [t.exchange, t.deadExchange, t.deadLetterExchange]) await channel.deleteExchange(x);
}

/** The work queue for an endpoint: stable, so one endpoint's jobs share a queue. */
export function queueIndexFor(endpointId: string, queueCount: number): number {
  if (queueCount === 1) return 0;
  let h = 0;
  for (let i = endpointId.length - 8; i < endpointId.length; i++) h = (h * 31 + endpointId.charCodeAt(i)) | 0;
  return Math.abs(h) % queueCount;
}
