import type { ErrorClass } from "@evently/core/attempts/sql.ts";
import type { JobOutcome } from "@evently/core/jobs/sql.ts";
import type { Logger } from "@evently/core/log.ts";
import type { JobMessage } from "@evently/core/queue/messages.ts";
import type { DeliveryTarget } from "../endpoint-cache.ts";
import type { AttemptListener } from "./pipeline.ts";
import type { Sent } from "./sending.ts";

/** One recorded attempt, as much of it as the log may show: never the secret, headers or body. */
export interface ObservedAttempt {
  jobId: string;
  endpointId: string;
  url: string;
  /** 1 for the first try. */
  attempt: number;
  status: number | null;
  errorClass: ErrorClass | null;
  /** Only shown for `blocked_address`, whose detail the SSRF guard writes (host and address). */
  errorDetail: string | null;
  /** The job is `dead`: no retry follows. */
  gaveUp: boolean;
}

export interface OutcomeLogOptions {
  /** Per endpoint, at most one summary and one "job failed" line in this long. */
  intervalMs?: number;
  now?: () => number;
}

interface EndpointTrack {
  failing: boolean;
  /** The current run of failures was announced (so its end is announced too). */
  announced: boolean;
  failingSince: number;
  /** Failed attempts since `failingSince`. */
  runFailedAttempts: number;
  lastLineAt: number;
  lastJobLineAt: number;
  /** Since the last line about this endpoint. */
  failedAttempts: number;
  jobsFailed: number;
}

const INTERVAL_MS = 60_000;
// Endpoints tracked at once (failing, or recovered within the interval); the oldest is forgotten
// first, which at worst repeats its "failing" line.
const MAX_TRACKED = 10_000;

/**
 * What a newcomer needs to see when deliveries fail, without a dead endpoint at 1,000 attempts a
 * second flooding the log. Per endpoint and worker process:
 * - `delivery failing` (warn) on the first failure after a success, or the first ever;
 * - `delivery recovered` (info) on the first success after an announced failure, with the run's
 *   `failedAttempts` and `failingForMs`;
 * - `delivery still failing` (warn) at most once per interval, with the `failedAttempts` and
 *   `jobsFailed` of the `periodMs` since the endpoint's previous line;
 * - `job dead: no more retries` (warn) when a job ends `dead` (retries exhausted, or a final answer), at most once per
 *   interval (the summary counts them all);
 * - the SSRF guard's refusal (`blocked_address`) once, explaining DELIVERY_ALLOWED_CIDRS.
 * Each line names the endpoint, the URL's host, the error class, status, attempt and job; the job's
 * attempts (GET /jobs/:id) hold the rest. An endpoint that fails again within an interval of its
 * previous line is flapping: its failures go to the next summary, not a new `delivery failing`.
 * Healthy endpoints cost nothing: only failing and just-recovered ones are tracked.
 */
export class DeliveryOutcomeLog implements AttemptListener {
  private readonly tracks = new Map<string, EndpointTrack>();
  private readonly warnedBlocked = new Set<string>();
  private readonly intervalMs: number;
  private readonly now: () => number;

  constructor(
    private readonly log: Logger,
    options: OutcomeLogOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? INTERVAL_MS;
    this.now = options.now ?? Date.now;
  }

  attempted(target: DeliveryTarget, job: JobMessage, sent: Sent, outcome: JobOutcome): void {
    const { status, errorClass, errorDetail } = sent.result;
    this.observe({
      jobId: job.jobId,
      endpointId: target.id,
      url: target.recordedUrl,
      attempt: outcome.attemptNumber,
      status,
      errorClass,
      errorDetail,
      gaveUp: outcome.status === "dead",
    });
  }

  observe(a: ObservedAttempt): void {
    if (a.errorClass === null) this.succeeded(a);
    else this.failed(a);
  }

  private succeeded(a: ObservedAttempt): void {
    const track = this.tracks.get(a.endpointId);
    if (!track) return;
    const now = this.now();
    if (!track.failing) {
      if (now - track.lastLineAt >= this.intervalMs) this.tracks.delete(a.endpointId);
      return;
    }
    track.failing = false;
    // An unannounced run (flapping) stays counted for the next summary.
    if (!track.announced) return;
    this.log.info("delivery recovered", {
      ...fields(a),
      failedAttempts: track.runFailedAttempts,
      failingForMs: now - track.failingSince,
    });
    this.reset(track, now);
  }

  private failed(a: ObservedAttempt): void {
    const now = this.now();
    const explained = a.errorClass === "blocked_address" && this.explainBlocked(a);
    let track = this.tracks.get(a.endpointId);
    if (track?.failing) {
      this.count(track, a, now);
      return;
    }
    // A new run of failures. Within an interval of the endpoint's last line (it recovered a moment
    // ago) the endpoint is flapping: the run is counted for the next summary, not announced.
    const flapping = track !== undefined && now - track.lastLineAt < this.intervalMs;
    track ??= this.track(a.endpointId, now);
    track.failing = true;
    track.failingSince = now;
    track.runFailedAttempts = 0;
    track.announced = false;
    if (flapping || track.failedAttempts > 0) {
      this.count(track, a, now);
      return;
    }
    track.announced = true;
    track.runFailedAttempts = 1;
    if (a.gaveUp) this.jobFailed(a, track, now);
    else if (!explained) this.log.warn("delivery failing", fields(a));
    this.reset(track, now);
  }

  /** A failure within a run: counted, and summarised at most once per interval. */
  private count(track: EndpointTrack, a: ObservedAttempt, now: number): void {
    track.failedAttempts++;
    track.runFailedAttempts++;
    if (a.gaveUp) {
      track.jobsFailed++;
      if (now - track.lastJobLineAt >= this.intervalMs) this.jobFailed(a, track, now);
    }
    if (now - track.lastLineAt < this.intervalMs) return;
    this.log.warn("delivery still failing", {
      ...fields(a),
      failedAttempts: track.failedAttempts,
      jobsFailed: track.jobsFailed,
      periodMs: now - track.lastLineAt,
      failingForMs: now - track.failingSince,
    });
    track.announced = true;
    this.reset(track, now);
  }

  /** Explains the SSRF guard's refusal, once per endpoint; says whether it did. */
  private explainBlocked(a: ObservedAttempt): boolean {
    if (this.warnedBlocked.has(a.endpointId)) return false;
    if (this.warnedBlocked.size >= MAX_TRACKED) this.warnedBlocked.clear();
    this.warnedBlocked.add(a.endpointId);
    this.log.warn(
      "delivery refused, and not retried: the endpoint's address is not public (loopback, private, link-local, cloud metadata), " +
        "so the SSRF guard blocks it; to deliver to a receiver on this machine or network, add its range to DELIVERY_ALLOWED_CIDRS " +
        "(like 10.1.0.0/16), or set DELIVERY_ALLOW_PRIVATE_NETWORKS=true to allow every address",
      { ...fields(a), detail: a.errorDetail },
    );
    return true;
  }

  private jobFailed(a: ObservedAttempt, track: EndpointTrack, now: number): void {
    this.log.warn("job dead: no more retries", fields(a));
    track.lastJobLineAt = now;
  }

  private track(endpointId: string, now: number): EndpointTrack {
    if (this.tracks.size >= MAX_TRACKED) this.tracks.delete(this.tracks.keys().next().value!);
    const track: EndpointTrack = {
      failing: false,
      announced: false,
      failingSince: now,
      runFailedAttempts: 0,
      lastLineAt: now,
      lastJobLineAt: Number.NEGATIVE_INFINITY,
      failedAttempts: 0,
      jobsFailed: 0,
    };
    this.tracks.set(endpointId, track);
    return track;
  }

  private reset(track: EndpointTrack, now: number): void {
    track.lastLineAt = now;
    track.failedAttempts = 0;
    track.jobsFailed = 0;
  }
}

function fields(a: ObservedAttempt): Record<string, unknown> {
  return { endpointId: a.endpointId, host: hostOf(a.url), errorClass: a.errorClass, status: a.status, attempt: a.attempt, jobId: a.jobId };
}

/** Host and port only: a URL's path and query can carry a token, its userinfo a password. */
function hostOf(url: string): string | null {
  try {
    return new URL(url).host;
  } catch {
    return null;
  }
}
