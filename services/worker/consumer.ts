import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Logger } from "@evently/core/log.ts";
import { decodeDeliveryMessage } from "@evently/core/queue/messages.ts";
import type { BrokerConnection } from "@evently/core/queue/connection.ts";
import type { Topology } from "@evently/core/queue/topology.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import { SPAN } from "@evently/core/telemetry/names.ts";
import { tracer } from "@evently/core/telemetry/setup.ts";
import type { DeliveryPipeline } from "./dispatch/pipeline.ts";

/**
 * Consumes every work queue with a prefetch window and hands each message to the pipeline. A
 * message is acked only when the pipeline has settled all its jobs durably; one that cannot be
 * read is rejected to the dead-letter queue; one whose handling failed (database down) goes back
 * to the queue after a pause.
 */
export class WorkQueueConsumer {
  private channel: Channel | undefined;
  private consumerTags: string[] = [];
  private readonly unsettled = new Set<Promise<void>>();

  constructor(
    private readonly broker: BrokerConnection,
    private readonly topology: Topology,
    private readonly pipeline: DeliveryPipeline,
    private readonly prefetch: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.broker.onConnect((connection) => this.subscribe(connection));
  }

  private async subscribe(connection: ChannelModel): Promise<void> {
    const channel = await connection.createChannel();
    channel.on("error", (err: Error) => this.log.warn("amqp consumer channel error", { error: err.message }));
    await channel.prefetch(this.prefetch);
    this.channel = channel;
    this.consumerTags = [];
    for (const queue of this.topology.workQueues) {
      const { consumerTag } = await channel.consume(queue, (msg) => msg && this.track(this.onMessage(channel, msg)));
      this.consumerTags.push(consumerTag);
    }
  }

  private track(work: Promise<void>): void {
    this.unsettled.add(work);
    void work.finally(() => this.unsettled.delete(work));
  }

  private async onMessage(channel: Channel, msg: ConsumeMessage): Promise<void> {
    const m = instruments();
    m.messagesConsumed.add(1);
    const message = decodeDeliveryMessage(msg.content);
    if (!message) {
      m.messagesDeadLettered.add(1);
      this.log.warn("unreadable message dead-lettered", { deliveryTag: msg.fields.deliveryTag });
      safely(() => channel.nack(msg, false, false));
      return;
    }
    try {
      await tracer().startActiveSpan(SPAN.deliver, async (span) => {
        span.setAttribute("evently.jobs", message.jobs.length);
        try {
          await this.pipeline.handle(message);
        } finally {
          span.end();
        }
      });
      safely(() => channel.ack(msg));
    } catch (err) {
      this.log.warn("message handling failed, requeueing", { error: (err as Error).message });
      await Bun.sleep(1000);
      safely(() => channel.nack(msg, false, true));
    }
  }

  /** Stops taking messages, lets those in hand settle (bounded), then closes the channel. */
  async stop(drainMs = 10_000): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    if (!channel) return;
    for (const tag of this.consumerTags) await channel.cancel(tag).catch(() => {});
    await Promise.race([Promise.allSettled([...this.unsettled]), Bun.sleep(drainMs)]);
    // Close the channel before the connection: closing the connection first loses pending acks.
    await channel.close().catch(() => {});
  }
}

/** An ack on a channel that died with its connection throws; the broker requeues the message anyway. */
function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    /* channel closed: the message is redelivered */
  }
}
