import type { Production } from "./producer.ts";
import { startReceivers, type Receivers } from "./receivers.ts";
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
