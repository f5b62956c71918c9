import type { Logger } from "../log.ts";
import { instruments } from "../telemetry/instruments.ts";
import type { HandoverHub } from "./handover.ts";
import type { DeliveryMessage, JobMessage } from "./messages.ts";

/**
 * How jobs travel from the outbox to workers. Ingest hands committed jobs to `publish`, or has its
 * commit notify `commitNotify`; workers receive them through `consume`. Every job is in the
 * `outbox` table before any transport sees it, so a transport may lose a hand-off (crash, broker
 * down) without losing the job: what is still due in the outbox is sent again.
 *
 * - `rabbitmq` (rabbitmq/transport.ts): publish with confirms right after commit; the dispatcher
 *   role sweeps what that missed, retries and lapsed leases; workers consume the work queues.
 * - `postgres` (postgres/transport.ts): the outbox is the queue. Workers take due entries with
 *   `FOR UPDATE SKIP LOCKED`, woken by the NOTIFY each commit of new jobs sends, with a poll as
 *   backstop.
 */
export interface JobTransport {
  readonly kind: TransportKind;
  /**
   * How long a new job's outbox entry waits for `publish` to deliver it before the outbox is read
   * for it. Zero where reading the outbox is how jobs are delivered.
   */
  readonly publishGraceMs: number;
  /**
   * A NOTIFY channel the statement that commits new jobs notifies in its own transaction, so the
   * wake-up leaves with the commit and needs no statement of its own; null where `publish` hands
   * the jobs on instead. Committers that notify need not build messages for `publish`.
   */
  readonly commitNotify: string | null;
  /**
   * Where the jobs a commit makes can go claimed by that very commit, with no NOTIFY and no take,
   * or no publish and no claim: a consumer of this transport in this process (the Postgres
   * transport in role `all`), or workers connected to this API process for the hand-over
   * (handover.ts). Null where there is none.
   */
  commitConsumer(): CommitConsumer | null;
  /**
   * Makes this process's commits offer their jobs to workers that connect for the hand-over
   * (handover.ts), through `commitConsumer`; the caller serves the hub's `upgrade` and `websocket`,
   * and stops it before its server.
   */
  acceptHandovers(tokens: string[]): HandoverHub;
  /** Connects; resolves once connected or after `waitMs`, reconnecting in the background. */
  start(waitMs: number): Promise<void>;
  /**
   * Hands jobs committed a moment ago on (nothing to do where the commit notified). Never throws: a
   * failed hand-off leaves them due in the outbox.
   */
  publish(jobs: JobMessage[]): void;
  /**
   * Calls `handle` with messages of jobs. A message counts as handled when `handle` resolves; when
   * it rejects, its jobs are offered again later (jobs claimed by then: once their claims lapse).
   * Resolves to a function that stops consuming and lets the messages in hand settle (bounded).
   */
  consume(handle: JobHandler): Promise<() => Promise<void>>;
  /**
   * The work queues' depth and consumers as the broker sees them, for the queue gauges
   * (telemetry/gauges.ts). Only called in the role that reports them.
   */
  queueDepths(): Promise<QueueDepth[]>;
  /** Reachability of what this transport needs beyond Postgres, by name, for /ready. */
  readiness(): Record<string, boolean>;
  /** Waits for hand-offs under way, then disconnects; call after consuming has stopped. */
  stop(): Promise<void>;
}

/**
 * A consumer the committing process can hand new jobs to (`JobTransport.commitConsumer`). Ingest
 * reserves room before a commit, has the commit claim the jobs that fit (events/sql.ts
 * `claimFor`), and hands the claimed jobs over afterwards, or releases the room. Nothing claimed this
 * way depends on the hand-over for its safety: a claim never handed over lapses, and the job is taken
 * again then.
 */
export interface CommitConsumer {
  /** The lease the commit gives each claim (WORKER_LEASE_MS), as a take would. */
  readonly leaseMs: number;
  /**
   * A commit whose jobs do not all fit claims none of them, rather than those that fit. RabbitMQ's
   * workers want that: the rest would be published, and the broker's messages in a worker's hands
   * count against the room it grants, so remainders wore the hand-over down at the edge.
   */
  readonly allOrNone?: boolean;
  /** Room for one commit's jobs, at most what one take would take; null: no room, or stopping. */
  reserve(): Reservation | null;
}

/** Room one commit reserved in a CommitConsumer: handed over or released, once. */
export interface Reservation {
  /** Most jobs the commit may claim. */
  readonly jobs: number;
  /** Hands over the jobs the commit claimed, as a message the consumer took; frees the rest of the room. */
  handOver(jobs: JobMessage[]): void;
  /** Frees the room of a commit that claimed nothing. */
  release(): void;
}

/**
 * A Reservation of `jobs` whose handing over or release runs `settle` once, with the jobs claimed
 * (none for a release): the consumer frees the room there and takes the jobs.
 */
export function reservationOf(jobs: number, settle: (claimed: JobMessage[]) => void): Reservation {
  let settled = false;
  const once = (claimed: JobMessage[]) => {
    if (settled) return;
    settled = true;
    settle(claimed);
  };
  return { jobs, handOver: once, release: () => once([]) };
}

export interface QueueDepth {
  queue: string;
  /** Messages (RabbitMQ) or outbox entries (Postgres) ready to be taken. */
  messages: number;
  consumers: number;
}

export const TRANSPORT_KINDS = ["rabbitmq", "postgres"] as const;
export type TransportKind = (typeof TRANSPORT_KINDS)[number];

/** What a transport says about a message besides its jobs. */
export interface Received {
  /** The publishing span, where the transport carries one (RabbitMQ's message headers). */
  traceparent?: string;
  /**
   * Every job of the message was claimed before it came (the Postgres transport's take, or the
   * commit that handed it over): the handler holds those claims rather than making its own.
   * Absent: the handler claims.
   */
  claimed?: boolean;
}

/** Resolves once every job of the message is durably settled (recorded, deferred or a duplicate). */
export type JobHandler = (message: DeliveryMessage, received: Received) => Promise<void>;

/**
 * Hands `handle` jobs that were claimed before they came (a take, a commit's hand-over), as one
 * message. Never rejects: the handler stops renewing the claims of a message it failed, so they
 * lapse and the jobs are offered again then, as a dead worker's would be; releasing them at once
 * would re-send a job whose request went out but whose outcome was not written. `settled` runs
 * once the message is done with, either way.
 */
export function handleClaimed(handle: JobHandler, jobs: JobMessage[], log: Logger, settled: () => void): Promise<void> {
  instruments().messagesConsumed.add(1);
  return handle({ v: 1, jobs }, { claimed: true })
    .catch((err) => log.warn("message handling failed; its jobs are offered again once their claims lapse", { error: (err as Error).message }))
    .finally(settled);
}
