import type postgres from "postgres";
import type { Accepted } from "./producer.ts";
import type { Receipt } from "./receivers.ts";

/**
 * The count every scenario ends with, from Postgres and the receivers:
 *   accepted    events answered 202 (distinct ids)
 *   delivered   accepted events whose job is `delivered`
 *   dead, expired, cancelled   accepted events whose job ended so
 *   lost        accepted events with no row in `events`, or a job in no end state after settling
 *   duplicates  deliveries a receiver acknowledged (2xx to a sender still listening) more than once
 *               per webhook-id: what at-least-once allows, reported, not a failure
 * Each scenario routes an event type to one endpoint, so an event has exactly one job.
 */
export interface Tally {
  accepted: number;
  delivered: number;
  dead: number;
  expired: number;
  cancelled: number;
  lost: number;
  duplicates: number;
  /** Delivered jobs no receiver ever saw (would mean a delivery recorded that never happened). */
  unseen: number;
  /** A few lost event ids with their state, for the log. */
  lostSample: string[];
}

const END_STATES = ["delivered", "dead", "expired", "cancelled"];

/** Polls until every accepted event has its row and its jobs are in end states, or `timeoutMs` passes. */
export async function settle(sql: postgres.Sql, accepted: Accepted[], timeoutMs: number): Promise<number> {
  const ids = [...new Set(accepted.map((a) => a.id))];
  const started = Date.now();
  for (;;) {
    const open = await openCount(sql, ids).catch(() => Number.POSITIVE_INFINITY);
    if (open === 0 || Date.now() - started > timeoutMs) return Date.now() - started;
    await Bun.sleep(250);
  }
}

async function openCount(sql: postgres.Sql, ids: string[]): Promise<number> {
  const [row] = await sql<{ missing: number; open: number }[]>`
    select (select ${ids.length}::int - count(*)::int from events where id = any (${ids}::text[])) as missing,
           (select count(*)::int from jobs where event_id = any (${ids}::text[]) and status <> all (${END_STATES}::text[])) as open`;
  return row!.missing + row!.open;
}

export async function tally(sql: postgres.Sql, accepted: Accepted[], receipts: Receipt[]): Promise<Tally> {
  const ids = [...new Set(accepted.map((a) => a.id))];
  const rows = await sql<{ eventId: string; jobId: string | null; status: string | null }[]>`
    select e.id as event_id, j.id as job_id, j.status from events e left join jobs j on j.event_id = e.id
    where e.id = any (${ids}::text[])`;
  const byEvent = new Map<string, { jobId: string | null; status: string | null }[]>();
  for (const r of rows) {
    let list = byEvent.get(r.eventId);
    if (!list) byEvent.set(r.eventId, (list = []));
    list.push(r);
  }
  const count = (status: string) => ids.filter((id) => (byEvent.get(id) ?? []).some((j) => j.status === status)).length;
  const lostIds = ids.filter((id) => {
    const jobs = byEvent.get(id);
    return !jobs || jobs.some((j) => j.jobId === null || !END_STATES.includes(j.status!));
  });
  const acknowledged = new Map<string, number>();
  const seen = new Set<string>();
  for (const r of receipts) {
    seen.add(r.webhookId);
    if (r.answered) acknowledged.set(r.webhookId, (acknowledged.get(r.webhookId) ?? 0) + 1);
  }
  const delivered = rows.filter((r) => r.status === "delivered");
  return {
    accepted: ids.length,
    delivered: count("delivered"),
    dead: count("dead"),
    expired: count("expired"),
    cancelled: count("cancelled"),
    lost: lostIds.length,
    duplicates: [...acknowledged.values()].reduce((n, c) => n + Math.max(0, c - 1), 0),
    unseen: delivered.filter((r) => !seen.has(r.jobId!)).length,
    lostSample: lostIds.slice(0, 5).map((id) => `${id}:${(byEvent.get(id) ?? []).map((j) => j.status ?? "no job").join("/") || "no event row"}`),
  };
}

export function resultLine(name: string, t: Tally): string {
  return `scenario=${name} accepted=${t.accepted} delivered=${t.delivered} dead=${t.dead} expired=${t.expired} lost=${t.lost} duplicates=${t.duplicates}`;
}

/** The q-quantile (0..1) of `values`, nearest rank; 0 for none. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
