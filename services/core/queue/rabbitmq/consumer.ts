import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Logger } from "../../log.ts";
import { instruments } from "../../telemetry/instruments.ts";
import { decodeDeliveryMessage } from "../messages.ts";
import type { JobHandler } from "../transport.ts";
import type { BrokerConnection } from "./connection.ts";
import type { Topology } from "./topology.ts";

/**
 * Consumes every work queue with a prefetch window and hands each message to the handler. A
 * message is acked only when the handler has settled all its jobs durably; one that cannot be
 * read is rejected to the dead-letter queue; one whose handling failed (database down) goes back
 * to the queue after a pause.
 */
export class WorkQueueConsumer {
  private channel: Channel | undefined;
  private consumerTags: string[] = [];
  private readonly unsettled = new Set<Promise<void>>();
  private stopped = false;
  /** Jobs of the messages being handled now (a hand-over beside the broker counts them against its room). */
  jobsInHand = 0;
  /** Told whenever a message's jobs are settled. */
  onSettled: (() => void) | undefined;

  constructor(
    private readonly broker: BrokerConnection,
    private readonly topology: Topology,
    private readonly handle: JobHandler,
    private readonly prefetch: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.broker.onConnect((connection) => this.subscribe(connection));
  }

  /** Runs on every (re)connect; a stopped consumer stays stopped. */
  private async subscribe(connection: ChannelModel): Promise<void> {
    if (this.stopped) return;
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
    this.jobsInHand += message.jobs.length;
    try {
      const traceparent = msg.properties.headers?.traceparent;
      await this.handle(message, { traceparent: typeof traceparent === "string" ? traceparent : undefined });
      safely(() => channel.ack(msg));
    } catch (err) {
      this.log.warn("message handling failed, requeueing", { error: (err as Error).message });
      await Bun.sleep(1000);
      safely(() => channel.nack(msg, false, true));
    } finally {
      this.jobsInHand -= message.jobs.length;
      this.onSettled?.();
    }
  }

  /** Stops taking messages, lets those in hand settle (bounded), then closes the channel. */
  async stop(drainMs = 10_000): Promise<void> {
    this.stopped = true;
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
