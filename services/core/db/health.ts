import { UnavailableError } from "../errors.ts";
import type { Sql } from "./client.ts";
import { withDeadline } from "./errors.ts";

/**
 * Errors that mean "no connection to the database can be made now", as opposed to "a connection
 * that worked was cut": refused (stopped), 57P03 (shutting down or starting up), a connect that
 * timed out, or a host that does not resolve. A cut alone is retried; this is worth failing fast on.
 */
const UNREACHABLE_CODES = new Set(["57P03", "ECONNREFUSED", "CONNECT_TIMEOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

export function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNREACHABLE_CODES.has(code);
}

export interface HealthOptions {
  /** How often a probe asks the database while it is down. */
  probeIntervalMs: number;
  /** Longest a probe may take (a connection attempt that hangs counts as down). */
  probeTimeoutMs: number;
}

const DEFAULTS: HealthOptions = { probeIntervalMs: 250, probeTimeoutMs: 1000 };

/**
 * The database's reachability as one process sees it: a circuit breaker in front of its pool. Once
 * a query finds the database unreachable, callers that ask (`ensureAvailable`) are refused at once
 * with a 503 instead of each waiting through the pool's reconnect backoff and a commit's retries,
 * and a background probe (`select 1` every probeIntervalMs) closes the circuit as soon as the
 * database answers. Nothing is refused on a guess: the circuit opens only on an error that says no
 * connection can be made, never on a query that merely failed, so a cut connection is still retried.
 */
export class DatabaseHealth {
  private down = false;
  private since = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly options: HealthOptions = DEFAULTS,
  ) {}

  get available(): boolean {
    return !this.down;
  }

  /** Throws a 503 `unavailable` while the database is known unreachable; does nothing otherwise. */
  ensureAvailable(): void {
    if (this.down) throw new UnavailableError("database unavailable, nothing was written; retry shortly");
  }

  /** Looks at a failed query's error: one saying the database cannot be reached opens the circuit. */
  observe(err: unknown): void {
    if (!isUnreachable(err) || this.down) return;
    this.down = true;
    this.since = Date.now();
    this.schedule();
  }

  /** For readiness: false at once while the circuit is open, else whether `select 1` answers in time. */
  async check(timeoutMs = this.options.probeTimeoutMs): Promise<boolean> {
    if (this.down) return false;
    return this.ping(timeoutMs);
  }

  /** How long the database has been unreachable, in ms; 0 while it is reachable. */
  downForMs(): number {
    return this.down ? Date.now() - this.since : 0;
  }

  private async ping(timeoutMs: number): Promise<boolean> {
    try {
      await withDeadline(this.sql`select 1`.execute(), timeoutMs, "database probe");
      return true;
    } catch (err) {
      this.observe(err);
      return false;
    }
  }

  private schedule(): void {
    this.timer = setTimeout(async () => {
      if (await this.ping(this.options.probeTimeoutMs)) {
        this.down = false;
        this.timer = undefined;
      } else this.schedule();
    }, this.options.probeIntervalMs);
    // The probe alone must not keep a process alive that is otherwise done.
    this.timer.unref?.();
  }
}

const shared = new WeakMap<Sql, DatabaseHealth>();

/** The one circuit of a pool: every user of the same `sql` in a process sees the same state. */
export function databaseHealth(sql: Sql): DatabaseHealth {
  let health = shared.get(sql);
  if (!health) shared.set(sql, (health = new DatabaseHealth(sql)));
  return health;
}
