import type { Logger } from "./core/log.ts";

/** EX_SOFTWARE: the process ended because of an error nothing handled (a bug), not because it was asked to. */
export const EXIT_UNHANDLED_ERROR = 70;
// 128 + the signal's number, as a shell reports a process a signal ended.
const EXIT_ON_SECOND_SIGNAL = { SIGINT: 130, SIGTERM: 143 } as const;
// Stopping finishes in-flight deliveries, which may wait for an endpoint's timeout; after an
// unhandled error the process is in a state nobody planned for, so it waits less than that.
const DEFAULT_CRASH_STOP_DEADLINE_MS = 15_000;

export interface ProcessEndOptions {
  /** Longest wait for the stop after an unhandled error before the process exits anyway. */
  crashStopDeadlineMs?: number;
}

/**
 * How a role process ends, in one place.
 *
 * SIGINT or SIGTERM: `stop` (the roles finish what they hold), then exit 0; a second signal while
 * stopping exits at once.
 * An error nothing handled (a promise rejected with no one awaiting it, an exception thrown from a
 * callback): one structured `error` line, the same stop within a deadline, then exit 70, so a
 * supervisor (compose, Kubernetes, systemd) restarts a clean process. Bun's default would print
 * the error as unstructured text and exit 1 at once, with nothing stopped. Either way nothing
 * accepted is lost: events are committed before they are answered, and a job the process held
 * comes back to a worker when its lease lapses.
 */
export function endProcessOnSignalOrUnhandledError(log: Logger, stop: () => Promise<void>, options: ProcessEndOptions = {}): void {
  let ending = false;
  const end = (code: number, deadlineMs?: number) => {
    ending = true;
    if (deadlineMs !== undefined) {
      setTimeout(() => {
        log.error("stopping took too long; exiting without finishing it", { deadlineMs });
        process.exit(code);
      }, deadlineMs).unref();
    }
    stop().then(
      () => process.exit(code),
      (err: unknown) => {
        log.error("stopping failed", { error: describeError(err) });
        process.exit(code === 0 ? 1 : code);
      },
    );
  };

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (ending) {
        log.warn("second signal while stopping: exiting now", { signal });
        process.exit(EXIT_ON_SECOND_SIGNAL[signal]);
      }
      log.info("shutting down", { signal });
      end(0);
    });
  }

  const onUnhandled = (kind: string) => (err: unknown) => {
    // While stopping, a further error is reported and the stop goes on.
    log.error(ending ? `${kind} while stopping` : `${kind}: stopping the process`, { error: describeError(err) });
    if (!ending) end(EXIT_UNHANDLED_ERROR, options.crashStopDeadlineMs ?? DEFAULT_CRASH_STOP_DEADLINE_MS);
  };
  process.on("unhandledRejection", onUnhandled("unhandled rejection"));
  process.on("uncaughtException", onUnhandled("uncaught exception"));
}

function describeError(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
