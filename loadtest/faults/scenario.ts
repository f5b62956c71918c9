import { Producer, type Production, type ProducerOptions } from "./producer.ts";
import { startReceivers, type Behaviour, type Receivers } from "./receivers.ts";
import { startFaultStack, type FaultStack, type StackOptions } from "./stack.ts";
import { settle, tally, type Tally } from "./tally.ts";

/** What a scenario asserts beyond lost=0, each printed with what was measured. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ScenarioResult {
  name: string;
  tally?: Tally;
  checks: Check[];
  /** Set when the scenario could not run for a reason that is not a failure (features missing). */
  skipped?: string;
}

export interface Scenario {
  name: string;
  run(log: (msg: string) => void): Promise<ScenarioResult>;
}

export const passed = (r: ScenarioResult) =>
  r.skipped !== undefined || (r.tally !== undefined && r.tally.lost === 0 && r.checks.every((c) => c.ok));

/**
 * The frame every scenario shares: its receivers and stack made, then always removed (the stack's
 * processes killed, its database and queues dropped), whatever the body does.
 */
export async function withStack<T>(
  options: Omit<StackOptions, "log">,
  log: (msg: string) => void,
  body: (stack: FaultStack, receivers: Receivers) => Promise<T>,
): Promise<T> {
  const receivers = startReceivers();
  let stack: FaultStack | undefined;
  try {
    stack = await startFaultStack({ ...options, log });
    return await body(stack, receivers);
  } finally {
    await stack?.stop().catch((err) => log(`stack stop: ${(err as Error).message}`));
    await receivers.stop().catch(() => {});
  }
}

/** Waits for every accepted event to end (bounded), then counts; the lost and unseen checks included. */
export async function settleAndCount(
  stack: FaultStack,
  receivers: Receivers,
  production: Production,
  log: (msg: string) => void,
  timeoutMs = 60_000,
): Promise<{ tally: Tally; checks: Check[] }> {
  const waited = await settle(stack.sql, production.accepted, timeoutMs);
  const t = await tally(stack.sql, production.accepted, receivers.receipts);
  log(`settled in ${(waited / 1000).toFixed(1)} s; delivered ${t.delivered}, dead ${t.dead}, expired ${t.expired}, cancelled ${t.cancelled}, lost ${t.lost}${t.lost ? ` (${t.lostSample.join(", ")})` : ""}`);
  return {
    tally: t,
    checks: [
      check("every delivered job was received", t.unseen === 0, `${t.unseen} delivered jobs never reached a receiver`),
      check("every event produced was accepted", production.givenUp.length === 0, `${production.givenUp.length} never accepted`),
    ],
  };
}

export const check = (name: string, ok: boolean, detail: string): Check => ({ name, ok, detail });

/** Statuses with their counts, `503×4, 0×2`, for a log line. */
export function summarise(statuses: number[]): string {
  const counts = new Map<number, number>();
  for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${s}×${n}`).join(", ") || "none";
}

/** What the fault and the checks of a {@link streamedFault} scenario work on. */
export interface FaultRun {
  stack: FaultStack;
  receivers: Receivers;
  log: (msg: string) => void;
}

export interface StreamedFault<F> {
  name: string;
  stack: Omit<StackOptions, "log" | "name">;
  /** The receiver path of the stream's one endpoint; its event type is `faults.<path>`. */
  path: string;
  /** Fields of the endpoint beyond its URL and event type. */
  endpoint?: Record<string, unknown>;
  /** How the receiver answers (default: 200 at once). */
  receive?: Behaviour;
  stream: Pick<ProducerOptions, "rate" | "durationMs" | "retryOn" | "giveUpAfterMs">;
  /** How long the stream runs before the fault. */
  faultAfterMs: number;
  /** Breaks something and heals it, while the stream goes on; what it returns goes to `checks`. */
  fault(run: FaultRun): Promise<F>;
  settleTimeoutMs?: number;
  /** The scenario's own checks, once everything accepted has settled and been counted. */
  checks(run: FaultRun & { production: Production; tally: Tally; fault: F }): Check[] | Promise<Check[]>;
}

/**
 * The kill and outage scenarios share one shape: one endpoint under a steady stream, a fault
 * part-way through, then settle and count. Only the fault and the checks differ, so a scenario
 * states those and this runs the rest.
 */
export function streamedFault<F>(spec: StreamedFault<F>): Scenario {
  const { name } = spec;
  const eventType = `faults.${spec.path.replace(/^\//, "")}`;
  return {
    name,
    run: (log) =>
      withStack({ name, ...spec.stack }, log, async (stack, receivers) => {
        const run: FaultRun = { stack, receivers, log };
        if (spec.receive) receivers.on(spec.path, spec.receive);
        await stack.subscribe(`${receivers.url}${spec.path}`, eventType, spec.endpoint);
        const producer = new Producer({ apiUrl: () => stack.apiUrl, appKey: stack.appKey, type: () => eventType, keyPrefix: name, ...spec.stream }).start();
        await Bun.sleep(spec.faultAfterMs);
        const fault = await spec.fault(run);
        const production = await producer.finish();
        const refused = production.answers.filter((a) => a.status !== 202);
        const slowest = Math.max(0, ...production.answers.map((a) => a.ms));
        log(`${production.answers.length} answers, ${refused.length} not 202 (${summarise(refused.map((a) => a.status))}); slowest answer ${slowest} ms`);
        const { tally, checks } = await settleAndCount(stack, receivers, production, log, spec.settleTimeoutMs);
        return { name, tally, checks: [...checks, ...(await spec.checks({ ...run, production, tally, fault }))] };
      }),
  };
}

/** No idempotency key made two events, in the database or in the answers. */
export async function oneEventPerKey(stack: FaultStack, production: Production): Promise<Check> {
  const [keys] = await stack.sql<{ twice: number }[]>`
    select count(*)::int as twice from (select idempotency_key from events group by 1 having count(*) > 1) k`;
  return check(
    "one event per idempotency key",
    keys!.twice === 0 && production.conflictingKeys.length === 0,
    `${keys!.twice} keys stored twice, ${production.conflictingKeys.length} answered with two ids`,
  );
}

export const allDelivered = (tally: Tally): Check =>
  check("everything accepted was delivered", tally.delivered === tally.accepted, `${tally.delivered} of ${tally.accepted}`);
