import type { Sql } from "../../db/client.ts";
import { DeadlineError, isConnectionError, withDeadline } from "../../db/errors.ts";
import type { Logger } from "../../log.ts";
import { RetryBudget } from "../../outbox/retry-budget.ts";
import { messageForSwept, OUTBOX_CHANNEL as CHANNEL, takeDueJobs, type Take } from "../../outbox/sql.ts";
import { instruments } from "../../telemetry/instruments.ts";
import type { JobMessage } from "../messages.ts";
import { handleClaimed, reservationOf, type CommitConsumer, type JobHandler, type JobTransport, type QueueDepth, type Reservation } from "../transport.ts";
import { HandoverHub, HandoverLink, type HandoverReceiver } from "../handover.ts";

// A connection cut at the wrong moment can leave a query unsettled forever; these statements are
// safe to repeat, so each is bounded and tried again.
const STATEMENT_DEADLINE_MS = 10_000;
// Shortest sleep: entries due now that the take skipped are locked by another worker, not ours.
const MIN_SLEEP_MS = 20;

export interface PostgresTransportOptions {
  /** How often an idle worker looks for due jobs nobody told it about (retries, lapsed leases). */
  pollIntervalMs: number;
  /** Most jobs taken in one statement. */
  takeBatch: number;
  /** Most jobs one worker holds at once; it takes more only as they settle. */
  maxInFlight: number;
  /**
   * The lease of the claim the take makes on each job (WORKER_LEASE_MS): the worker renews it while
   * it holds the job; should the worker die, the job is offered again once it lapses.
   */
  claimLeaseMs: number;
  /** Most due retries this worker takes per second (DISPATCH_MAX_RETRIES_PER_SECOND); unbounded when absent. */
  maxRetriesPerSecond?: number;
  /**
   * Whether a consumer offers itself to ingest in the same process (`commitConsumer`,
   * QUEUE_LOCAL_HANDOVER): new jobs are claimed by their own commit and handed over in memory.
   */
  handOverLocally?: boolean;
  /**
   * A worker process's link to an API process for the hand-over (handover.ts; QUEUE_HANDOVER_URL and
   * the token): each consumer connects to it and gets the jobs that API's commits claim for it.
   */
  handoverFrom?: { url: string; token: string };
}

/**
 * The Postgres transport: the outbox table is the queue. Ingest's commit sends a NOTIFY on
 * OUTBOX_CHANNEL (`commitNotify`), so there is nothing to publish; consumers LISTEN, take due
 * entries in batches with SKIP LOCKED (outbox/sql.ts `takeDueJobs`), claiming their jobs in the
 * same statement, and hand them to the handler as claimed. An idle consumer waits for a
 * notification or the poll interval, whichever comes first: one small query per interval, no busy
 * loop. Crash safety is the outbox's own: a taken job stays in it as a lease until its outcome is
 * recorded.
 *
 * Where the process also ingests (role `all`), its consumer is also ingest's `commitConsumer`: a
 * commit claims the jobs that fit in the consumer's room itself and notifies only for the rest;
 * ingest hands them over in memory, saving the wake-up and the take a job costs otherwise ("Why a
 * single event at 1,000/s costs what it costs" in BENCHMARKS.md). The rest go the usual way.
 * Separate API and worker processes do the same over a connection (handover.ts): the API
 * `acceptHandovers`, the worker connects (`handoverFrom`).
 */
export class PostgresTransport implements JobTransport {
  readonly kind = "postgres";
  readonly publishGraceMs = 0;
  readonly commitNotify = CHANNEL;
  private readonly consumers = new Set<OutboxConsumer>();
  private hub: HandoverHub | null = null;

  /**
   * @param sql the process's pool: listening, the depth gauge.
   * @param connectTakes makes the connection a consumer takes through, in INDEX_ONLY_SESSION
   *   (db/client.ts); only a role that consumes makes one.
   */
  constructor(
    private readonly sql: Sql,
    private readonly connectTakes: () => Sql,
    private readonly options: PostgresTransportOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {}

  /** Nothing to hand on: the commit's own NOTIFY (`commitNotify`) woke the workers, and the jobs are in the outbox. */
  publish(): void {}

  async consume(handle: JobHandler): Promise<() => Promise<void>> {
    const consumer = new OutboxConsumer(this.connectTakes, this.options, handle, this.log);
    const listening = await this.sql.listen(CHANNEL, () => consumer.wake());
    consumer.start();
    this.consumers.add(consumer);
    const from = this.options.handoverFrom;
    const link = from ? new HandoverLink(from.url, from.token, consumer, this.log) : null;
    consumer.onRoomChange = link ? () => link.roomChanged() : undefined;
    if (link) consumer.heldForCommits = () => link.heldForCommits(this.options.pollIntervalMs);
    link?.start();
    return async () => {
      this.consumers.delete(consumer);
      await link?.stop();
      await consumer.stop();
      await listening.unlisten().catch(() => {});
    };
  }

  /** The hand-over's API side (JobTransport.acceptHandovers); a consumer in this very process (role `all`) still comes first. */
  acceptHandovers(tokens: string[]): HandoverHub {
    this.hub = new HandoverHub(tokens, this.options.claimLeaseMs, this.options.takeBatch, this.log);
    return this.hub;
  }

  commitConsumer(): CommitConsumer | null {
    if (this.options.handOverLocally) for (const consumer of this.consumers) return consumer;
    return this.hub;
  }

  /**
   * The outbox is the one queue: its due entries, and this worker as its consumer. Postgres cannot
   * tell which sessions LISTEN on a channel, so each worker counts itself (1 while consuming) and
   * dashboards sum queue="outbox" over workers (docs/observability.md).
   */
  async queueDepths(): Promise<QueueDepth[]> {
    const [row] = await withDeadline(
      this.sql<{ due: number }[]>`select count(*)::int as due from outbox where due_at <= now()`,
      STATEMENT_DEADLINE_MS,
      "outbox depth",
    );
    return [{ queue: "outbox", messages: row?.due ?? 0, consumers: this.consumers.size }];
  }

  readiness(): Record<string, boolean> {
    return {};
  }

  async stop(): Promise<void> {}
}

/**
 * One consume loop: take what is due while there is room, hand it on, sleep until news. Also takes
 * jobs a commit claimed for it, within the same room: in this process (CommitConsumer) or from an
 * API process over the hand-over connection (HandoverReceiver).
 */
class OutboxConsumer implements CommitConsumer, HandoverReceiver {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private inFlight = 0;
  /** Room ingest's commits in flight reserved for the jobs they may claim for this consumer. */
  private reservedForCommits = 0;
  private readonly unsettled = new Set<Promise<void>>();
  private wakeUp: (() => void) | undefined;
  /** A wake-up that came while the loop was busy: its next sleep returns at once. */
  private wokenMeanwhile = false;
  /** The loop sleeps because this worker holds all it may: a settled message wakes it. */
  private waitingForRoom = false;
  private readonly retries: RetryBudget | undefined;
  private lapsedLookedAt = 0;
  /** Told whenever the jobs in hand change (the hand-over link grants room by it). */
  onRoomChange: (() => void) | undefined;
  /** Room the take leaves to an API's commits that are using it (HandoverLink.heldForCommits). */
  heldForCommits: () => number = () => 0;
  /** Since when that has kept the take from taking: at most a poll interval. */
  private heldBackSince: number | undefined;

  /** The one connection takes go through, so their cached plan is made once (INDEX_ONLY_SESSION). */
  private takeSql: Sql;

  constructor(
    private readonly connectTakes: () => Sql,
    private readonly options: PostgresTransportOptions,
    private readonly handle: JobHandler,
    private readonly log: Logger,
  ) {
    if (options.maxRetriesPerSecond !== undefined) this.retries = new RetryBudget(options.maxRetriesPerSecond);
    this.takeSql = connectTakes();
  }

  start(): void {
    this.loop = this.run();
  }

  get leaseMs(): number {
    return this.options.claimLeaseMs;
  }

  /**
   * Room for a commit's jobs: what neither the jobs in hand nor other commits' reservations use.
   * The take does not count reservations (a commit may claim fewer jobs than it reserved room for,
   * or none), so a busy ingest never starves the take; the jobs in hand can pass
   * WORKER_MAX_IN_FLIGHT by what commits claimed meanwhile, at most a take's worth per commit.
   */
  reserve(): Reservation | null {
    const reserved = this.room();
    if (reserved === 0) return null;
    this.reservedForCommits += reserved;
    return reservationOf(reserved, (claimed) => {
      this.reservedForCommits -= reserved;
      this.receive(claimed, "process");
    });
  }

  room(): number {
    if (this.stopped) return 0;
    return Math.max(0, Math.min(this.options.takeBatch, this.options.maxInFlight - this.inFlight - this.reservedForCommits));
  }

  /** Jobs a commit claimed for this consumer, here or in the API process that sent them (`from`). */
  receive(jobs: JobMessage[], from: "process" | "api" = "api"): void {
    // Stopping: the claims are left to lapse, and the jobs are taken again then, by any worker.
    if (jobs.length === 0 || this.stopped) return;
    instruments().jobsHandedOver.add(jobs.length, { from });
    this.track(jobs);
  }

  wake(): void {
    const wakeUp = this.wakeUp;
    this.wakeUp = undefined;
    if (wakeUp) wakeUp();
    else this.wokenMeanwhile = true;
  }

  /** Stops taking, then lets the messages in hand settle (bounded). */
  async stop(drainMs = 10_000): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.loop;
    await Promise.race([Promise.allSettled([...this.unsettled]), Bun.sleep(drainMs)]);
    await this.takeSql.end({ timeout: 5 });
  }

  private sleep(ms: number): Promise<void> {
    if (this.wokenMeanwhile) {
      this.wokenMeanwhile = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake(), ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const room = this.takeRoom();
      if (room <= 0) {
        this.waitingForRoom = true;
        // Woken when a message settles; room held for commits lapses after a poll interval.
        const heldFor = this.heldBackSince === undefined ? 0 : performance.now() - this.heldBackSince;
        await this.sleep(Math.max(1, this.options.pollIntervalMs - heldFor));
        this.waitingForRoom = false;
        continue;
      }
      let take: Take;
      const retryLimit = this.retries?.available(room) ?? room;
      try {
        // Lapsed leases (a worker died, an answer was lost) are looked for once per poll interval.
        const lapsedLeases = Date.now() - this.lapsedLookedAt >= this.options.pollIntervalMs;
        const options = { limit: room, leaseMs: this.options.claimLeaseMs, retryLimit, lapsedLeases };
        take = await withDeadline(takeDueJobs(this.takeSql, options), STATEMENT_DEADLINE_MS, "take due jobs");
        if (lapsedLeases) this.lapsedLookedAt = Date.now();
        failures = 0;
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 10 === 0) this.log.warn("taking due jobs failed, retrying", { error: (err as Error).message, failures });
        // A take left unsettled on a cut connection would hold every later one behind it on this
        // single connection: past the deadline, the connection is dropped and a new one made. So
        // it is after any failure to reach the database: seen in the database-outage test, a
        // connection whose connects were refused while the database was away went on timing out
        // its connects for 45 s after it was back, every other connection of the process working.
        if (err instanceof DeadlineError || isConnectionError(err)) this.reconnectTakes();
        await this.sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
        continue;
      }
      const taken = take.jobs;
      if (taken.length > 0) this.track(taken.map(messageForSwept));
      const retries = taken.filter((job) => job.reason === "retry").length;
      this.retries?.spend(retries);
      // A full batch says more is due now; retries held back by the budget, more once it refills;
      // news that came during the take (a notification) is looked at at once; otherwise sleep until
      // the next entry is due, or news.
      if (taken.length >= room) continue;
      if (this.retries && retryLimit < room && retries >= retryLimit) {
        const chunk = Math.max(1, Math.min(room, Math.round((this.retries.perSecond * this.options.pollIntervalMs) / 1000)));
        await this.sleep(Math.max(10, Math.min(this.options.pollIntervalMs, this.retries.msUntil(chunk))));
      } else if (this.wokenMeanwhile) this.wokenMeanwhile = false;
      else await this.sleep(this.sleepFor(take.nextDueMs));
    }
  }

  /**
   * What the next take may take: the room the jobs in hand leave, less what commits handing jobs
   * over are about to use. Once that has kept the loop from taking for a poll interval, all of the
   * room: jobs due in the outbox (retries, what did not fit in a commit) are taken at least once per
   * interval even while commits keep the worker full. Under sustained overload new events come first.
   */
  private takeRoom(): number {
    const free = this.options.maxInFlight - this.inFlight;
    const held = free > 0 ? this.heldForCommits() : 0;
    if (held < free || free <= 0) {
      this.heldBackSince = undefined;
      return Math.min(this.options.takeBatch, free - held);
    }
    this.heldBackSince ??= performance.now();
    if (performance.now() - this.heldBackSince < this.options.pollIntervalMs) return 0;
    this.heldBackSince = undefined;
    return Math.min(this.options.takeBatch, free);
  }

  /**
   * How long to sleep when nothing more is due: until the next entry is due (a held job, a retry),
   * at most the poll interval. A notification ends the sleep sooner.
   */
  private sleepFor(nextDueMs: number | null): number {
    const poll = this.options.pollIntervalMs;
    return nextDueMs === null ? poll : Math.min(poll, Math.max(MIN_SLEEP_MS, nextDueMs));
  }

  private reconnectTakes(): void {
    const stale = this.takeSql;
    this.takeSql = this.connectTakes();
    void stale.end({ timeout: 0 }).catch(() => {});
  }

  private track(jobs: JobMessage[]): void {
    this.inFlight += jobs.length;
    this.onRoomChange?.();
    const work = handleClaimed(this.handle, jobs, this.log, () => {
      this.inFlight -= jobs.length;
      this.unsettled.delete(work);
      this.onRoomChange?.();
      // Only a loop waiting for room needs to hear: waking one that sleeps until news would
      // spend a take on finding nothing new.
      if (this.waitingForRoom) this.wake();
    });
    this.unsettled.add(work);
  }
}
