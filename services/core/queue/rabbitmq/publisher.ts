import type { ChannelModel, ConfirmChannel } from "amqplib";
import { UnavailableError } from "../../errors.ts";
import type { BrokerConnection } from "./connection.ts";
import type { Topology } from "./topology.ts";

export interface OutgoingMessage {
  queueIndex: number;
  content: Buffer;
  /** AMQP headers: `traceparent` of the publish span, only when it is recorded. */
  headers?: Record<string, string>;
}

/**
 * Publishes persistent messages on a confirm channel and resolves only when RabbitMQ has confirmed
 * every one of them (written to the queue's replicas for quorum queues). Any failure rejects: the
 * caller leaves the jobs in the outbox and the sweeper publishes them later.
 */
export class ConfirmPublisher {
  private channel: ConfirmChannel | undefined;

  constructor(
    private readonly broker: BrokerConnection,
    private readonly topology: Topology,
  ) {}

  async start(): Promise<void> {
    await this.broker.onConnect(async (connection: ChannelModel) => {
      const channel = await connection.createConfirmChannel();
      channel.on("error", () => {});
      channel.on("close", () => {
        if (this.channel === channel) this.channel = undefined;
      });
      this.channel = channel;
    });
  }

  /** Closes the channel (before the connection is closed, so pending confirms are not lost). */
  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close().catch(() => {});
  }

  get ready(): boolean {
    return this.channel !== undefined;
  }

  async publish(messages: OutgoingMessage[]): Promise<void> {
    await this.confirmAll(
      messages.map((m) => ({ exchange: this.topology.exchange, routingKey: String(m.queueIndex), content: m.content, headers: m.headers })),
    );
  }

  /** Publishes dead-job notices on the dead-letter exchange, routed by event type; resolves once all are confirmed. */
  async publishDeadLetters(notices: { routingKey: string; messageId: string; content: Buffer }[]): Promise<void> {
    const exchange = this.topology.deadLetterExchange;
    await this.confirmAll(notices.map((n) => ({ exchange, routingKey: n.routingKey, content: n.content, messageId: n.messageId })));
  }

  private async confirmAll(
    messages: { exchange: string; routingKey: string; content: Buffer; messageId?: string; headers?: Record<string, string> }[],
  ): Promise<void> {
    const channel = this.channel;
    if (!channel) throw new UnavailableError("RabbitMQ is not connected");
    const confirmations = messages.map(
      (m) =>
        new Promise<void>((resolve, reject) => {
          const ok = channel.publish(
            m.exchange,
            m.routingKey,
            m.content,
            { persistent: true, contentType: "application/json", mandatory: false, messageId: m.messageId, headers: m.headers },
            (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()),
          );
          void ok; // back-pressure is bounded by callers: they publish one batch per commit or sweep
        }),
    );
    await Promise.all(confirmations);
  }
}
