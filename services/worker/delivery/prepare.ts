import { Batcher } from "@evently/core/batching.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { withDeadline } from "@evently/core/db/errors.ts";
import { claimJobs, type ClaimRequest } from "@evently/core/jobs/sql.ts";
import type { JobMessage } from "@evently/core/queue/messages.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import type { DeliveryTarget, EndpointCache } from "../endpoint-cache.ts";
import type { DeliveryCheck, Verdict } from "./checks.ts";
import type { LeaseKeeper } from "./leases.ts";

// A second claim starts beside a running one only with this many jobs; fewer wait for it to end, as
// the attempt writes do (recorder.ts). Measured at 1,000 and 2,000 deliveries/s: BENCHMARKS.md.
const CLAIM_OVERLAP_MIN = 32;
/** Claims in flight at once (the second one only with CLAIM_OVERLAP_MIN jobs). */
export const CLAIM_CONNECTIONS = 2;

export interface PrepareOptions {
  claimBatch: number;
  /** Longest wait for Postgres to confirm a batch claim; then the message is handed back. */
  claimTimeoutMs: number;
  /** How long a claim holds before another worker may take the job, unless renewed (leases.ts). */
  leaseMs: (target: DeliveryTarget) => number;
  /** Keeps each successful claim alive while the job is handled here (leases.ts). */
  leases?: Pick<LeaseKeeper, "hold">;
}

/** A claimed job, what its endpoint is, and whether it goes out now. */
export interface Prepared {
  job: JobMessage;
  target: DeliveryTarget;
  /** Null: send it. Otherwise what happens instead. */
  verdict: Verdict | null;
}

/**
 * The first stage: endpoints from the cache, claims (batched: one statement for many jobs), then
 * the flow-control checks in order. Jobs whose endpoint was deleted, or that another delivery
 * claimed first (a message published twice), are dropped here: nothing to send or record.
 */
export class PrepareStage {
  private readonly claims: Batcher<ClaimRequest, boolean>;

  constructor(
    sql: Sql,
    private readonly endpoints: EndpointCache,
    private readonly checks: DeliveryCheck[],
    private readonly options: PrepareOptions,
  ) {
    this.claims = new Batcher(
      async (requests) => {
        const claimed = await withDeadline(claimJobs(sql, requests), options.claimTimeoutMs, "claim");
        return requests.map((r) => claimed.has(r.jobId));
      },
      { maxBatch: options.claimBatch, concurrency: CLAIM_CONNECTIONS, overlapMinWeight: CLAIM_OVERLAP_MIN },
    );
  }

  /** Endpoints of a message's jobs, with one query for those not cached. */
  targets(jobs: JobMessage[]): Promise<Map<string, DeliveryTarget>> {
    return this.endpoints.getMany(jobs.map((j) => j.endpointId));
  }

  /**
   * Null when the job is not this delivery's to make (endpoint deleted, or claimed already).
   * `claimedAlready`: the transport claimed it as it took it; its claim is only held from here.
   */
  async prepare(job: JobMessage, target: DeliveryTarget | undefined, claimedAlready = false): Promise<Prepared | null> {
    if (!target) return null;
    if (!claimedAlready && !(await this.claims.add({ jobId: job.jobId, attempt: job.attempt, leaseMs: this.options.leaseMs(target) }))) {
      instruments().duplicateJobs.add(1);
      return null;
    }
    this.options.leases?.hold(job.jobId);
    const now = Date.now();
    for (const check of this.checks) {
      const verdict = await check.check(job, target, now);
      if (verdict) return { job, target, verdict };
    }
    return { job, target, verdict: null };
  }
}
