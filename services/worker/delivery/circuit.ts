import type { Sql } from "@evently/core/db/client.ts";
import { releaseHeldJobs } from "@evently/core/endpoints/sql.ts";
import {
  applyObserved,
  isTroubled,
  nothingObserved,
  observe,
  passage,
  type CircuitPolicy,
  type CircuitState,
  type Health,
  type Observed,
} from "@evently/core/health/circuit.ts";
import { CIRCUIT_CHANGED_CHANNEL, claimProbe, lockHealth, readHealth, readTroubled, writeHealth } from "@evently/core/health/sql.ts";
import type { JobOutcome } from "@evently/core/jobs/sql.ts";
import type { Logger } from "@evently/core/log.ts";
import type { JobMessage } from "@evently/core/queue/messages.ts";
import { instruments } from "@evently/core/telemetry/instruments.ts";
import type { DeliveryTarget } from "../endpoint-cache.ts";
import type { DeliveryCheck, Verdict } from "./checks.ts";
import type { AttemptListener, EndpointControl } from "./pipeline.ts";
import type { Sent } from "./sending.ts";

export interface CircuitOptions {
  policy: CircuitPolicy;
  /** Disable an endpoint failing for this long (ENDPOINT_AUTO_DISABLE_AFTER_MS); 0: never. */
  autoDisableAfterMs: number;
  /** The endpoint's per-attempt timeout: a probe's claim lasts it plus PROBE_MARGIN_MS. */
  timeoutMs: (target: DeliveryTarget) => number;
  /** How long observations gather before they are written (a probe's outcome is written at once). */
  flushDelayMs?: number;
}

// Covers a probe's wait for a slot and the batched write of its outcome. A probe whose worker died
// holds the circuit half-open this much past its timeout; then another worker may probe.
const PROBE_MARGIN_MS = 10_000;
const FLUSH_DELAY_MS = 100;
// Shortest hold, so a job due a moment before the retry time does not spin through the queue.
const MIN_HOLD_MS = 50;
// After a notification, the rows are read this much later, so a burst of them costs one query.
const REREAD_DELAY_MS = 10;

interface Pending {
  target: DeliveryTarget;
  observed: Observed;
}

/**
 * The circuit breaker of one worker process, over the state all workers share in endpoint_health
 * (core/health/circuit.ts has the state machine). Two roles:
 * - a DeliveryCheck: a job for an endpoint whose circuit is open waits (`hold`, `circuit_open`,
 *   no attempt spent) until the retry time; then one delivery, across all workers, is claimed in
 *   Postgres as the probe, and the others wait for its outcome;
 * - an AttemptListener: attempt outcomes are folded per endpoint and written every FLUSH_DELAY_MS
 *   in one transaction for all endpoints, which also applies transitions, releases the held jobs of
 *   a circuit that closed, and auto-disables an endpoint failing for too long.
 * The healthy path costs nothing: a success is ignored unless the endpoint is troubled (failures in
 * its run or window, or a circuit not closed), and a closed circuit is a map miss.
 *
 * Workers learn of each other's changes by LISTEN/NOTIFY, not by polling: every change that matters
 * to a check (a transition, an endpoint entering or leaving the troubled set) is announced, and the
 * announced rows are read by primary key. The local view holds troubled endpoints only; it is read
 * whole when the listening connection (re)starts, since notifications sent while it was down are
 * lost. Polling the table every second would cost a query per worker per second for the rare case;
 * a notification costs nothing until something changes, and arrives within milliseconds.
 */
export class CircuitBreaker implements DeliveryCheck, AttemptListener {
  readonly name = "circuit";
  private readonly views = new Map<string, Health>();
  private readonly pending = new Map<string, Pending>();
  /** This worker's probe per endpoint: the job allowed through. */
  private readonly probes = new Map<string, string>();
  private readonly claims = new Map<string, Promise<boolean>>();
  private readonly toReread = new Set<string>();
  private rereadTimer: ReturnType<typeof setTimeout> | undefined;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly control: EndpointControl,
    private readonly log: Logger,
    private readonly options: CircuitOptions,
  ) {}

  async start(): Promise<void> {
    const listener = await this.sql.listen(
      CIRCUIT_CHANGED_CHANNEL,
      (id) => this.reread(id),
      () => void this.reload(),
    );
    this.unlisten = listener.unlisten;
    // Before the first delivery, not in the background: an open circuit must hold from the start.
    await this.reload();
  }

  /** Writes what is observed so far, then stops listening. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.rereadTimer);
    clearTimeout(this.flushTimer);
    await this.flushing;
    await this.flush();
    await this.unlisten?.().catch(() => {});
    for (const id of [...this.views.keys()]) this.setView(id, null);
  }

  // ---- The check ----

  check(job: JobMessage, target: DeliveryTarget, now: number): Verdict | null | Promise<Verdict | null> {
    const view = this.views.get(target.id);
    if (!view) return null;
    const p = passage(view, now);
    if (p.kind === "pass") return null;
    if (p.kind === "wait") return this.hold(view, now);
    return this.probe(job, target);
  }

  /**
   * The check again, once the job holds a slot (sending.ts): waiting for one can outlast a closed
   * circuit. Only what needs no claim goes: a closed circuit, or this worker's own probe; a circuit
   * that opened meanwhile holds the job like `check` would.
   */
  recheck(job: JobMessage, target: DeliveryTarget, now: number): Verdict | null {
    const view = this.views.get(target.id);
    if (!view || this.probes.get(target.id) === job.jobId) return null;
    return passage(view, now).kind === "pass" ? null : this.hold(view, now);
  }

  /** Claims the probe; of this worker's jobs only the first to ask may win it, the rest wait. */
  private async probe(job: JobMessage, target: DeliveryTarget): Promise<Verdict | null> {
    const claiming = this.claims.get(target.id);
    if (claiming) {
      await claiming;
      return this.holdNow(target.id);
    }
    const claim = this.claim(job, target);
    this.claims.set(target.id, claim);
    try {
      return (await claim) ? null : this.holdNow(target.id);
    } finally {
      this.claims.delete(target.id);
    }
  }

  private async claim(job: JobMessage, target: DeliveryTarget): Promise<boolean> {
    try {
      const { won, health } = await claimProbe(this.sql, target.id, this.options.timeoutMs(target) + PROBE_MARGIN_MS);
      this.setView(target.id, health);
      if (won) {
        this.probes.set(target.id, job.jobId);
        instruments().circuitTransitions.add(1, { to: "half_open" });
        this.log.info("circuit half-open: probing", { endpointId: target.id, jobId: job.jobId });
      }
      return won;
    } catch (err) {
      this.log.warn("circuit probe claim failed; holding", { endpointId: target.id, error: (err as Error).message });
      return false;
    }
  }

  private holdNow(endpointId: string): Verdict | null {
    const view = this.views.get(endpointId);
    const now = Date.now();
    if (!view) return null;
    if (passage(view, now).kind === "pass") return null;
    return this.hold(view, now);
  }

  /**
   * Open: until the retry time. Half-open (a probe out): until the probe's claim lapses, but no
   * longer than the shortest open interval, since jobs this worker defers just after the probe
   * closed the circuit are not among those the close released. Past the retry time with no probe
   * won (the claim failed): the shortest open interval.
   */
  private hold(view: Health, now: number): Verdict {
    const { openMs } = this.options.policy;
    const untilRetry = (view.circuitRetryAt?.getTime() ?? now) - now;
    const wait = untilRetry <= 0 ? openMs : view.circuit === "half_open" ? Math.min(untilRetry, openMs) : untilRetry;
    return { kind: "hold", reason: "circuit_open", delayMs: Math.max(MIN_HOLD_MS, wait) };
  }

  // ---- The listener ----

  attempted(target: DeliveryTarget, job: JobMessage, sent: Sent, _outcome: JobOutcome): void {
    const ok = sent.result.errorClass === null;
    const isProbe = this.probes.get(target.id) === job.jobId;
    if (isProbe) this.probes.delete(target.id);
    let entry = this.pending.get(target.id);
    if (!entry) {
      if (ok && !isProbe && !this.troubled(target.id)) return;
      entry = { target, observed: nothingObserved() };
      this.pending.set(target.id, entry);
    }
    entry.target = target;
    observe(entry.observed, ok, sent.attemptedAt, isProbe);
    this.scheduleFlush(isProbe ? 0 : (this.options.flushDelayMs ?? FLUSH_DELAY_MS));
  }

  private troubled(endpointId: string): boolean {
    const view = this.views.get(endpointId);
    if (!view) return false;
    if (isTroubled(view, this.options.policy, new Date())) return true;
    this.setView(endpointId, null); // its window ran out: healthy again, no need to keep it
    return false;
  }

  private scheduleFlush(delayMs: number): void {
    if (this.flushing || this.stopped) return; // the running flush schedules the next one
    if (this.flushTimer && delayMs > 0) return;
    clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.pending.size > 0) this.scheduleFlush(this.options.flushDelayMs ?? FLUSH_DELAY_MS);
      });
    }, delayMs);
  }

  /**
   * Applies the observations gathered so far, for every endpoint in one transaction. If the write
   * fails they are dropped, not retried: the counts are advisory, and the next failures are written.
   */
  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending.clear();
    const byId = new Map(batch.map((p) => [p.target.id, p]));
    const { policy, autoDisableAfterMs } = this.options;
    let written: { now: Date; rows: { before: Health; after: Health }[] };
    try {
      written = await this.sql.begin(async (tx) => {
        const { now, rows } = await lockHealth(tx, batch.map((p) => ({ id: p.target.id, appId: p.target.appId })));
        const changes = rows.map((before) => ({ before, after: applyObserved(before, byId.get(before.endpointId)!.observed, policy, now) }));
        const notify = changes
          .filter(({ before, after }) => before.circuit !== after.circuit || isTroubled(before, policy, now) !== isTroubled(after, policy, now))
          .map(({ after }) => after.endpointId);
        await writeHealth(tx, changes.map((c) => c.after), notify);
        return { now, rows: changes };
      });
    } catch (err) {
      this.log.warn("circuit state write failed; these observations are dropped", { endpoints: batch.length, error: (err as Error).message });
      return;
    }
    // After the commit, not under the health rows' locks: a backlog can be large. Should this
    // fail, the held jobs still come back when their hold ends.
    const closed = written.rows.filter(({ before, after }) => before.circuit !== "closed" && after.circuit === "closed");
    if (closed.length > 0) {
      await releaseHeldJobs(this.sql, closed.map((c) => c.after.endpointId)).catch((err) =>
        this.log.warn("releasing held jobs failed; they come back when their hold ends", { error: (err as Error).message }),
      );
    }
    const m = instruments();
    for (const { before, after } of written.rows) {
      this.setView(after.endpointId, isTroubled(after, policy, written.now) ? after : null);
      if (before.circuit !== after.circuit) {
        m.circuitTransitions.add(1, { to: after.circuit });
        this.logTransition(before.circuit, after);
      }
      const failingFor = after.failingSince ? written.now.getTime() - after.failingSince.getTime() : 0;
      const failedNow = byId.get(after.endpointId)!.observed.failures > 0;
      if (autoDisableAfterMs > 0 && failedNow && after.failingSince && failingFor >= autoDisableAfterMs) {
        const reason = `failing since ${after.failingSince.toISOString()}: auto-disabled`;
        await this.control.disable(byId.get(after.endpointId)!.target, reason).catch((err) =>
          this.log.warn("auto-disable failed", { endpointId: after.endpointId, error: (err as Error).message }),
        );
      }
    }
  }

  private logTransition(from: CircuitState, h: Health): void {
    const fields = { endpointId: h.endpointId, from, consecutiveFailures: h.consecutiveFailures, retryAt: h.circuitRetryAt?.toISOString() };
    if (h.circuit === "closed") this.log.info("circuit closed: the probe was delivered", fields);
    else this.log.warn(from === "closed" ? "circuit opened: deliveries wait" : "circuit opened again: the probe failed", fields);
  }

  // ---- The local view ----

  private reread(endpointId: string): void {
    this.toReread.add(endpointId);
    this.rereadTimer ??= setTimeout(() => {
      this.rereadTimer = undefined;
      const ids = [...this.toReread];
      this.toReread.clear();
      readHealth(this.sql, ids).then(
        (rows) => {
          const found = new Map(rows.map((r) => [r.endpointId, r]));
          const now = new Date();
          for (const id of ids) {
            const row = found.get(id);
            this.setView(id, row && isTroubled(row, this.options.policy, now) ? row : null);
          }
        },
        (err) => this.log.warn("circuit state read failed", { error: (err as Error).message }),
      );
    }, REREAD_DELAY_MS);
  }

  private async reload(): Promise<void> {
    try {
      const rows = await readTroubled(this.sql);
      const keep = new Set(rows.map((r) => r.endpointId));
      for (const id of [...this.views.keys()]) if (!keep.has(id)) this.setView(id, null);
      for (const row of rows) this.setView(row.endpointId, row);
    } catch (err) {
      this.log.warn("circuit state read failed", { error: (err as Error).message });
    }
  }

  /** Every change of the view goes through here, which keeps the open-circuits gauge in step. */
  private setView(endpointId: string, health: Health | null): void {
    const before = this.views.get(endpointId)?.circuit ?? "closed";
    const after = health?.circuit ?? "closed";
    if (health) this.views.set(endpointId, health);
    else this.views.delete(endpointId);
    if (before === after) return;
    const gauge = instruments().circuitsOpen;
    if (before !== "closed") gauge.add(-1, { state: before });
    if (after !== "closed") gauge.add(1, { state: after });
  }

  /** This worker's view of an endpoint's circuit (tests). */
  viewOf(endpointId: string): Health | undefined {
    return this.views.get(endpointId);
  }
}
