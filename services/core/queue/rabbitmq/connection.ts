import amqp, { type Channel, type ChannelModel } from "amqplib";
import type { Logger } from "../../log.ts";

type Setup = (connection: ChannelModel) => Promise<void>;

/**
 * One AMQP connection per process, re-established with capped exponential backoff whenever it
 * drops. Users register `onConnect` setups (declare topology, open channels, start consumers); they
 * run again after every reconnect.
 */
export class BrokerConnection {
  private connection: ChannelModel | undefined;
  private readonly setups: Setup[] = [];
  private closing = false;
  private connecting: Promise<void> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {}

  get connected(): boolean {
    return this.connection !== undefined;
  }

  /** A new channel on the current connection (the caller closes it); rejects while disconnected. */
  async channel(): Promise<Channel> {
    if (!this.connection) throw new Error("amqp: not connected");
    return this.connection.createChannel();
  }

  /** Registers a setup; runs it at once when already connected. */
  async onConnect(setup: Setup): Promise<void> {
    this.setups.push(setup);
    if (this.connection) await setup(this.connection);
  }

  /** Connects, retrying until it works or close() is called. */
  start(): Promise<void> {
    this.connecting ??= this.connectLoop(0).finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connectLoop(failures: number): Promise<void> {
    while (!this.closing) {
      try {
        const connection = await amqp.connect(this.url, { clientProperties: { connection_name: "evently" } });
        connection.on("error", (err: Error) => this.log.warn("amqp connection error", { error: err.message }));
        connection.on("close", () => this.handleClose(connection));
        this.connection = connection;
        for (const setup of this.setups) await setup(connection);
        if (failures > 0) this.log.info("amqp reconnected", { after: failures });
        return;
      } catch (err) {
        failures++;
        const conn = this.connection;
        this.connection = undefined;
        await conn?.close().catch(() => {});
        const delay = Math.min(10_000, 100 * 2 ** Math.min(failures, 7));
        if (failures === 1 || failures % 10 === 0)
          this.log.warn("amqp connect failed, retrying", { error: (err as Error).message, delayMs: delay, failures });
        await new Promise<void>((r) => (this.retryTimer = setTimeout(r, delay)));
      }
    }
  }

  private handleClose(connection: ChannelModel): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    if (this.closing) return;
    this.log.warn("amqp connection lost, reconnecting");
    void this.start();
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retryTimer);
    const connection = this.connection;
    this.connection = undefined;
    await connection?.close().catch(() => {});
  }
}
