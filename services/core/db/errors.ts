/** Error codes that mean "the database was not reachable", not "the request was wrong". */
const CONNECTION_CODES = new Set([
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "DEADLINE_EXCEEDED",
]);

export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("08") || CONNECTION_CODES.has(code));
}

/**
 * SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): the statement was
 * refused for what it holds, not for the moment it came, so sending it again meets the same answer.
 */
export function refusedForItsContent(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("22") || code.startsWith("23"));
}

/**
 * 40P01 (deadlock_detected) and 55P03 (lock_not_available, a `lock_timeout` reached): the
 * transaction was rolled back for when it ran, not for what it holds, so it may run again as it was.
 */
export function lostLockRace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "40P01" || code === "55P03";
}

export class DeadlineError extends Error {
  readonly code = "DEADLINE_EXCEEDED";
}

/**
 * Rejects when `work` has not settled within `ms`. A connection cut at the wrong moment can leave
 * a postgres.js query unsettled forever; callers whose work is safe to retry bound it with this.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
