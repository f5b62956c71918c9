import { Batcher } from "@evently/core/batching.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { withDeadline } from "@evently/core/db/errors.ts";
import type { Logger } from "@evently/core/log.ts";
import type { DeliveryCheck, Verdict } from "./checks.ts";

/**
 * FIFO endpoints (`ordering: "fifo"`): a job is sent only when no earlier job of its endpoint is
 * unfinished (pending, delivering or scheduled), so the receiver sees events in the order they were
 * accepted, one at a time: the job in flight is itself unfinished, so nothing behind it goes until it
 * is delivered or ends (dead, expired, cancelled). A failed job waiting for its retry is unfinished
 * too, so it keeps its place. A job that is not first is held (no attempt spent), for longer the
 * further back it is, so a long line does not come back to be refused every few hundred milliseconds.
 *
 * "Earlier" is by the event's acceptance: (created_at, event_id). An event's id starts with its
 * created_at in milliseconds, so ties are events accepted in the same millisecond, ordered by the
 * rest of their ids; events of one batch share created_at, so the batch keeps its order only if
 * their ids increase through it (core/ids.ts). Job ids cannot serve: they are made in SQL, random
 * within a millisecond, in no particular order of the batch.
 *
 * The lookup walks the endpoint's jobs by the (endpoint_id, id) index. A job's id is the database's
 * clock when it was inserted, within INSERT_WINDOW_MS of its event's acceptance (the group commit's
 * deadline and its retries), so the walk is bounded on both sides: from a floor this process keeps
 * per endpoint (FLOOR_MARGIN_MS before the first unfinished job it last saw, for jobs inserted then
 * but committed after; everything below was finished) to INSERT_WINDOW_MS after the job itself.
 * Without a floor (a fresh process) the first lookup walks the endpoint's whole history once (about
 * 60 ms for 100k jobs; with a floor, a few ms). Checks running at once share one statement.
 *
 * Not covered: a job brought back after it ended (retry of a dead job, recover) below the floor is
 * not waited for by later jobs checked in other processes; and two producers accepting events at
 * the same moment get no order between them (nor can they expect one).
 */
export interface OrderingOptions {
  /** Hold per unfinished job ahead (default 50 ms; a job's place in line times this, with ±20%). */
  holdPerJobAheadMs?: number;
  /** Jobs ahead counted at most (default 40): the longest hold is this times holdPerJobAheadMs. */
  maxAhead?: number;
  /** Longest wait for the lookup (default 5 s); a job whose lookup fails is held for a second. */
  timeoutMs?: number;
  maxBatch?: number;
}

const INSERT_WINDOW_MS = 60_000;
// One ingest statement's longest run (its deadline is 10 s): the ids it made may commit that late.
const FLOOR_MARGIN_MS = 10_000;
const FAILED_LOOKUP_HOLD_MS = 1000;

interface Lookup {
  jobId: string;
  /** Jobs of the endpoint with smaller ids are all finished; "" when unknown. */
  floor: string;
}

interface Answer {
  /** The endpoint's first unfinished job by id from the floor on; null when the job is gone. */
  head: string | null;
  /** Unfinished jobs of the endpoint accepted before this one, counted up to maxAhead. */
  ahead: number;
}

export function orderingCheck(sql: Sql, log: Logger, options: OrderingOptions = {}): DeliveryCheck {
  const perJob = options.holdPerJobAheadMs ?? 50;
  const maxAhead = options.maxAhead ?? 40;
  const floors = new Map<string, string>();
  const lookups = new Batcher<Lookup, Answer>(
    async (batch) => {
      const answers = await withDeadline(jobsAhead(sql, batch, maxAhead), options.timeoutMs ?? 5000, "ordering lookup");
      return batch.map((l) => answers.get(l.jobId) ?? { head: null, ahead: 0 });
    },
    { maxBatch: options.maxBatch ?? 100, concurrency: 2 },
  );
  return {
    name: "ordering",
    check: async (job, target): Promise<Verdict | null> => {
      if (target.ordering !== "fifo") return null;
      let answer: Answer;
      try {
        answer = await lookups.add({ jobId: job.jobId, floor: floors.get(target.id) ?? "" });
      } catch (err) {
        // Sending without knowing could overtake an earlier job: wait instead, at no attempt's cost.
        log.warn("ordering lookup failed; job held", { endpointId: target.id, error: String(err) });
        return { kind: "hold", reason: "ordering", delayMs: FAILED_LOOKUP_HOLD_MS };
      }
      // Lowered as well as raised: a job brought back below the floor is waited for from now on.
      if (answer.head !== null) floors.set(target.id, floorBelow(answer.head));
      if (answer.ahead === 0) return null;
      return { kind: "hold", reason: "ordering", delayMs: Math.round(perJob * answer.ahead * (0.8 + Math.random() * 0.4)) };
    },
  };
}

/** An id a window below `head`'s: jobs inserted while `head` was, but committed after, stay above it. */
function floorBelow(head: string): string {
  const ms = Number.parseInt(head.slice(4, 16), 16) - FLOOR_MARGIN_MS;
  return Number.isFinite(ms) && ms > 0 ? `job_${ms.toString(16).padStart(12, "0")}` : "";
}

/**
 * For each job: its endpoint's first unfinished job by id from the floor (the next floor), and how
 * many unfinished jobs of the endpoint were accepted before it, up to `maxAhead`. Both walk the
 * (endpoint_id, id) index from the floor (or the job, when it is below the floor); the count stops
 * INSERT_WINDOW_MS of ids after the job, since an earlier event's job is not inserted later than that.
 */
export async function jobsAhead(sql: Sql, lookups: Lookup[], maxAhead: number): Promise<Map<string, Answer>> {
  if (lookups.length === 0) return new Map();
  const rows = await sql<{ id: string; head: string | null; ahead: number }[]>`
    with c as (
      select * from unnest(${lookups.map((l) => l.jobId)}::text[], ${lookups.map((l) => l.floor)}::text[]) as c (id, floor_id)
    )
    select j.id, h.id as head, a.ahead
    from c
    join jobs j on j.id = c.id
    left join lateral (
      select k.id from jobs k
      where k.endpoint_id = j.endpoint_id and k.id >= least(c.floor_id, j.id)
        and k.status in ('pending', 'delivering', 'scheduled')
      order by k.id limit 1
    ) h on true
    cross join lateral (
      select count(*)::int as ahead from (
        select from jobs k
        where k.endpoint_id = j.endpoint_id and k.id >= least(c.floor_id, j.id)
          and k.id < 'job_' || lpad(to_hex(('x' || substr(j.id, 5, 12))::bit(48)::bigint + ${INSERT_WINDOW_MS}::int), 12, '0')
          and k.id <> j.id
          and k.status in ('pending', 'delivering', 'scheduled')
          and (k.created_at, k.event_id) < (j.created_at, j.event_id)
        limit ${maxAhead}::int
      ) x
    ) a`;
  return new Map(rows.map((r) => [r.id, { head: r.head, ahead: r.ahead }]));
}
