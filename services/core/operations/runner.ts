import type { Sql, TxSql } from "../db/client.ts";
import { replayJobs } from "../jobs/sql.ts";
import type { Logger } from "../log.ts";
import { selectionOf, type Selection } from "./params.ts";
import { countSelected, lockNextOperation, nextSelected, recordProgress, type OperationRow } from "./sql.ts";

export interface RunnerOptions {
  /** Jobs one step replays (OPERATION_BATCH_SIZE). */
  batchSize: number;
  /** Most jobs one operation replays per second (OPERATION_RATE_PER_SECOND), whatever the number of runners. */
  ratePerSecond: number;
}

/** What one step did; null when no operation had a step due. */
export interface StepResult {
  operationId: string;
  replayed: number;
  failed: number;
  finished: boolean;
}

/**
 * Works through operations (bulk replays) in steps. A step is one transaction: lock the next
 * operation due (SKIP LOCKED), take its next `batchSize` jobs in id order after its cursor, replay
 * them (jobs/sql.ts replayJobs: each gets a `retry` outbox entry due now) and write the progress
 * and the new cursor. A runner that dies mid-step loses nothing: the transaction rolls back and the
 * next runner redoes that step. Several runners (every dispatcher, and every worker with the
 * Postgres transport) share the operations safely; a step of one operation is due only `paceMs`
 * after its last, so an operation replays at most OPERATION_RATE_PER_SECOND jobs a second
 * wherever its steps run. Replayed jobs then go the normal way, outbox → worker, where the
 * endpoint's pause, circuit and rate limit apply, and retries leave the outbox at most
 * DISPATCH_MAX_RETRIES_PER_SECOND. A cancelled operation is no longer picked.
 */
export class OperationRunner {
  private readonly paceMs: number;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly options: RunnerOptions,
    private readonly log: Logger,
  ) {
    this.paceMs = Math.ceil((options.batchSize * 1000) / options.ratePerSecond);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    // Idle: look again after one pace (capped), so a new operation starts within a second.
    const idleMs = Math.max(20, Math.min(1000, this.paceMs));
    let failures = 0;
    while (!this.stopped) {
      let stepped = false;
      try {
        stepped = (await this.step()) !== null;
        failures = 0;
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 10 === 0) this.log.warn("operation step failed, retrying", { error: (err as Error).message, failures });
      }
      // After a step, another operation may be due at once; after a failure, back off.
      if (!stepped || failures > 0) await this.sleep(failures > 0 ? Math.min(10_000, idleMs * 2 ** Math.min(failures, 5)) : idleMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => (clearTimeout(timer), resolve());
    });
  }

  /** One step of the next operation due, in one transaction. Exposed for tests. */
  async step(): Promise<StepResult | null> {
    return this.sql.begin(async (tx) => {
      const op = await lockNextOperation(tx, this.paceMs);
      if (!op) return null;
      let selection: Selection;
      try {
        selection = selectionOf(op.kind, op.params);
      } catch (err) {
        // Params this version cannot read will not become readable: the operation fails, saying so.
        const error = `params not understood: ${(err as Error).message.slice(0, 500)}`;
        await recordProgress(tx, op.id, { state: "failed", total: op.total, done: op.done, failed: op.failed, cursor: op.cursor, error });
        this.log.warn("operation failed", { operationId: op.id, error });
        return { operationId: op.id, replayed: 0, failed: 0, finished: true };
      }
      return this.replayBatch(tx, op, selection);
    });
  }

  private async replayBatch(tx: TxSql, op: OperationRow, selection: Selection): Promise<StepResult> {
    const total = op.total ?? (await countSelected(tx, op.appId, selection));
    const batch = await nextSelected(tx, op.appId, selection, op.cursor, this.options.batchSize);
    const replayable = batch.filter((c) => c.endpointEnabled).map((c) => c.id);
    const replayed = (await replayJobs(tx, op.appId, replayable, selection.statuses)).length;
    const failed = batch.length - replayed;
    const done = op.done + replayed;
    const failedSoFar = op.failed + failed;
    const finished = batch.length < this.options.batchSize;
    await recordProgress(tx, op.id, {
      state: finished ? "completed" : "running",
      // Jobs that ended in the selection after it was counted are replayed too: once finished, the
      // total is what was handled, so done + failed = total always holds at the end.
      total: finished ? done + failedSoFar : Math.max(total, done + failedSoFar),
      done,
      failed: failedSoFar,
      cursor: batch.at(-1)?.id ?? op.cursor,
    });
    if (finished) this.log.info("operation completed", { operationId: op.id, kind: op.kind, done, failed: failedSoFar });
    return { operationId: op.id, replayed, failed, finished };
  }
}
