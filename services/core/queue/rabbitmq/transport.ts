import type { Config } from "../../config/index.ts";
import type { Sql } from "../../db/client.ts";
import { Batcher } from "../../batching.ts";
import { DeadlineError, isConnectionError, withDeadline } from "../../db/errors.ts";
import type { Logger } from "../../log.ts";
import { clearPublished, type DeadLetter } from "../../outbox/sql.ts";
import type { JobMessage } from "../messages.ts";
import { HandedOverJobs, HandoverHub, HandoverLink } from "../handover.ts";
import type { CommitConsumer, JobHandler, JobTransport, QueueDepth } from "../transport.ts";
import { BrokerConnection } from "./connection.ts";
import { WorkQueueConsumer } from "./consumer.ts";
import { publishJobs } from "./publish.ts";
import { ConfirmPublisher } from "./publisher.ts";
import { declareTopology, topologyFor, type Topology } from "./topology.ts";

/** Most job ids one clear statement takes. */
const CLEAR_BATCH_MAX_JOBS = 10_000;
/**
 * Under load, a clear starts at most this long after the previous one, gathering the confirms that
 * come meanwhile; idle, a clear runs at once. Nothing waits for a clear but the entry itself, which
 * the sweeper leaves alone for AMQP_PUBLISH_GRACE_MS, so this only bounds the statements a second.
 */
const CLEAR_MIN_INTERVAL_MS = 10;
/**
 * A connection cut at the wrong moment can leave a clear unsettled forever, and with it every clear
 * after it (one at a time) and the transport's stop, which waits for its hand-offs: after the fault
 * test that cuts every database connection, that stop hung past the teardown's 90 s in 2 runs of
 * 15, and in none of 18 with this deadline. A clear past it is abandoned and its own connection
 * replaced; its entries wait for the sweeper, whose message the claims keep from being delivered
 * twice.
 */
const CLEAR_DEADLINE_MS = 10_000;

/** The hand-over between API and worker processes on this transport (handover.ts). */
export interface RabbitHandoverOptions {
  /** The lease the commit gives each claim (WORKER_LEASE_MS). */
  leaseMs: number;
  /** Most jobs one commit may claim for a worker (QUEUE_TAKE_BATCH). */
  maxPerCommit: number;
  /** Most jobs a worker holds at once, from the broker and the hand-over together (WORKER_MAX_IN_FLIGHT). */
  maxInFlight: number;
  /** A worker process's link to an API process (QUEUE_HANDOVER_URL and the token). */
  from?: { url: string; token: string };
}

/**
 * The RabbitMQ transport: jobs are published with confirms right after commit (their outbox entries
 * are cleared once confirmed), and workers consume the work queues. What the fast path misses, and
 * every retry and lapsed lease, the dispatcher role sweeps from the outbox through `send`.
 *
 * A worker connected to an API process for the hand-over (handover.ts, as on the Postgres
 * transport) gets that API's new jobs that fit its room claimed by their own commit, over the
 * connection: no publish, no confirm, no clear and no claim statement. The commit leaves each a
 * `lease` entry, so a job whose worker went away is published by the dispatcher once its claim
 * lapses. The rest go through the broker as usual.
 */
export class RabbitTransport implements JobTransport {
  readonly kind = "rabbitmq";
  readonly publishGraceMs: number;
  readonly commitNotify = null;
  private readonly broker: BrokerConnection;
  private readonly publisher: ConfirmPublisher;
  private readonly topology: Topology;
  private readonly handOffs = new Set<Promise<void>>();
  /**
   * Clears of confirmed jobs' outbox entries, one statement at a time and at most one per
   * CLEAR_MIN_INTERVAL_MS: those arriving meanwhile share the next. One per commit group made as many
   * clears as inserts; an entry left a few milliseconds longer is far within the sweeper's grace.
   */
  private readonly clears: Batcher<string[], void>;
  /** The clears' own connection (connectClears), made at the first clear, so only a role that publishes has it. */
  private ownClearSql: Sql | undefined;
  private hub: HandoverHub | null = null;

  /**
   * @param sql the process's pool; the clears run in it unless `connectClears` is given.
   * @param connectClears makes the connection the fast path's outbox clears run in: runtime.ts
   *   makes one in INDEX_ONLY_SESSION (db/client.ts; outbox/sql.ts `clearPublished` says why).
   *   The transport ends it when it stops.
   */
  constructor(
    private readonly config: Config["queue"] & { AMQP_URL: string },
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly prefetch = 64,
    private readonly connectClears?: () => Sql,
    private readonly handover?: RabbitHandoverOptions,
  ) {
    this.publishGraceMs = config.AMQP_PUBLISH_GRACE_MS;
    this.broker = new BrokerConnection(config.AMQP_URL, log);
    this.topology = topologyFor(config);
    this.publisher = new ConfirmPublisher(this.broker, this.topology);
    this.clears = new Batcher<string[], void>(
      async (lists) => {
        const sql = this.connectClears ? (this.ownClearSql ??= this.connectClears()) : this.sql;
        try {
          await withDeadline(clearPublished(sql, lists.flat()), CLEAR_DEADLINE_MS, "outbox clear");
        } catch (err) {
          if (sql === this.ownClearSql && (err instanceof DeadlineError || isConnectionError(err))) {
            this.ownClearSql = undefined;
            void sql.end({ timeout: 0 }).catch(() => {});
          }
          throw err;
        }
        return lists.map(() => undefined);
      },
      { maxBatch: CLEAR_BATCH_MAX_JOBS, concurrency: 1, weight: (jobIds) => jobIds.length, minIntervalMs: CLEAR_MIN_INTERVAL_MS },
    );
  }

  /** The hand-over's API side (JobTransport.acceptHandovers). */
  acceptHandovers(tokens: string[]): HandoverHub {
    if (!this.handover) throw new Error("the hand-over needs its options (leaseMs, maxPerCommit)");
    this.hub = new HandoverHub(tokens, this.handover.leaseMs, this.handover.maxPerCommit, this.log, true);
    return this.hub;
  }

  /** The workers connected for the hand-over, if this process accepts them; otherwise every job goes through the broker. */
  commitConsumer(): CommitConsumer | null {
    return this.hub;
  }

  async start(waitMs: number): Promise<void> {
    await this.broker.onConnect(async (connection) => {
      const channel = await connection.createChannel();
      await declareTopology(channel, this.config);
      await channel.close();
    });
    await this.publisher.start();
    // If RabbitMQ is down, keep going: the API still accepts events (they wait in the outbox) and
    // the connection keeps retrying.
    await Promise.race([this.broker.start(), Bun.sleep(waitMs)]);
  }

  get ready(): boolean {
    return this.publisher.ready;
  }

  /** Publishes with confirms; resolves once RabbitMQ has every message. Rejects on any failure. */
  send(jobs: JobMessage[], path: "fast" | "sweep"): Promise<void> {
    return publishJobs(this.publisher, jobs, {
      queueCount: this.config.AMQP_WORK_QUEUES,
      jobsPerMessage: this.config.AMQP_JOBS_PER_MESSAGE,
      path,
    });
  }

  /**
   * Announces dead jobs on the dead-letter exchange (topology.ts), one persistent JSON message per
   * job with its id as message id, routed by event type. Resolves once RabbitMQ confirmed them all.
   */
  sendDeadLetters(letters: DeadLetter[]): Promise<void> {
    return this.publisher.publishDeadLetters(
      letters.map((letter) => ({ routingKey: letter.eventType, messageId: letter.jobId, content: Buffer.from(JSON.stringify(letter)) })),
    );
  }

  publish(jobs: JobMessage[]): void {
    if (jobs.length === 0 || !this.publisher.ready) return;
    const work = this.send(jobs, "fast")
      .then(() => this.clears.add(jobs.map((j) => j.jobId)))
      .catch((err) => this.log.debug("fast-path publish or its outbox clear failed; the sweeper will publish", { error: (err as Error).message }));
    this.handOffs.add(work);
    void work.finally(() => this.handOffs.delete(work));
  }

  async consume(handle: JobHandler): Promise<() => Promise<void>> {
    const consumer = new WorkQueueConsumer(this.broker, this.topology, handle, this.prefetch, this.log);
    await consumer.start();
    const handover = this.handover;
    if (!handover?.from) return () => consumer.stop();
    const handedOver = new HandedOverJobs(handle, handover, () => consumer.jobsInHand, this.log);
    const link = new HandoverLink(handover.from.url, handover.from.token, handedOver, this.log);
    handedOver.onRoomChange = consumer.onSettled = () => link.roomChanged();
    link.start();
    return async () => {
      await link.stop();
      await Promise.all([handedOver.stop(), consumer.stop()]);
    };
  }

  /** checkQueue on each work queue, on a channel of its own: a failed check closes its channel. */
  async queueDepths(): Promise<QueueDepth[]> {
    const channel = await this.broker.channel();
    // A queue deleted behind our back closes the channel with an error: the check rejects, and an
    // unheard `error` event must not take the process down with it.
    channel.on("error", () => {});
    try {
      const depths: QueueDepth[] = [];
      for (const queue of this.topology.workQueues) {
        const { messageCount, consumerCount } = await channel.checkQueue(queue);
        depths.push({ queue, messages: messageCount, consumers: consumerCount });
      }
      return depths;
    } finally {
      await channel.close().catch(() => {});
    }
  }

  readiness(): Record<string, boolean> {
    return { rabbitmq: this.broker.connected && this.publisher.ready };
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.handOffs]);
    // Channels before the connection, so pending confirms and acks are not lost.
    await this.publisher.close();
    await this.broker.close();
    await this.ownClearSql?.end({ timeout: 5 });
  }
}
