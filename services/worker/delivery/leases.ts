import type { Sql } from "@evently/core/db/client.ts";
import { withDeadline } from "@evently/core/db/errors.ts";
import { renewClaims } from "@evently/core/jobs/sql.ts";
import type { Logger } from "@evently/core/log.ts";

export interface LeaseOptions {
  /** How long a claim holds without renewal (WORKER_LEASE_MS); claims are renewed every third of it. */
  leaseMs: number;
}

/**
 * The heartbeat of this worker's claims. A claim is a short lease (jobs.next_attempt_at); while a
 * job is being delivered here its id is held, and every leaseMs/3 all held ids are renewed in one
 * statement (renewClaims). A worker that dies stops renewing, so its jobs are offered again within
 * one lease of its death instead of after the endpoint's whole timeout plus a margin; a live worker
 * keeps its jobs however slow their endpoint.
 *
 * A renewal that fails (database down) is logged and tried again at the next beat, never thrown:
 * if the outage outlasts the lease the claims lapse and another worker may deliver the job again,
 * which at-least-once delivery allows; the outcome this worker records still applies.
 */
export class LeaseKeeper {
  private readonly held = new Set<string>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private renewing: Promise<void> | undefined;
  private failures = 0;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly options: LeaseOptions,
  ) {}

  get leaseMs(): number {
    return this.options.leaseMs;
  }

  /** How many claims are held now (for tests and metrics). */
  get size(): number {
    return this.held.size;
  }

  start(): void {
    const every = Math.max(100, Math.floor(this.options.leaseMs / 3));
    this.timer = setInterval(() => {
      // One renewal at a time: a slow one is not stacked on by the next beat.
      this.renewing ??= this.renew().finally(() => (this.renewing = undefined));
    }, every);
  }

  /** A claim on the job succeeded: keep it alive until released. */
  hold(jobId: string): void {
    this.held.add(jobId);
  }

  /** The job's outcome or deferral is recorded (or its handling failed): let its claim go. */
  release(...jobIds: string[]): void {
    for (const id of jobIds) this.held.delete(id);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.renewing;
  }

  /** One beat: every held claim extended by a lease from now. Exposed for tests. */
  async renew(): Promise<void> {
    if (this.held.size === 0) return;
    const ids = [...this.held];
    try {
      // Bounded by the beat: a statement stuck on a cut connection must not hold up the next one.
      await withDeadline(renewClaims(this.sql, ids, this.options.leaseMs), Math.max(100, this.options.leaseMs / 3), "lease renewal");
      if (this.failures > 0) this.log.info("lease renewal recovered", { failures: this.failures });
      this.failures = 0;
    } catch (err) {
      this.failures++;
      if (this.failures === 1 || this.failures % 10 === 0)
        this.log.warn("lease renewal failed; claims lapse if it keeps failing", { error: (err as Error).message, jobs: ids.length, failures: this.failures });
    }
  }
}
