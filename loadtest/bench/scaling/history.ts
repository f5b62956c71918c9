import postgres from "postgres";
import { samplePayload } from "../ceilings.ts";
import { defaultPhases, type PhaseSpec } from "../phases.ts";
import type { ScalingCurve, ScalingPoint } from "../scaling.ts";
import { chosen, openBench, pointOf, type CurveContext } from "./harness.ts";

/**
 * History size: ingest and claim with 0 existing rows, then with 1, 3 and 10 million delivered jobs
 * (with their events and attempts) already in the database. The rows are written straight into the
 * stack's scratch database with set-based SQL in the shape the migrations give them: events of the
 * producer's application, each with one job for the endpoint the phases deliver to, ended
 * (delivered, one in a hundred dead after a final 4xx) and one attempt each, all older than any
 * event the phases publish. Then VACUUM ANALYZE and a CHECKPOINT, as a database that has lived with
 * them would be: analyzed, and its pages written, so a checkpoint the fill made due happens before
 * the measurement, not in it. Each point also counts the checkpoints that started during its
 * ingest phase, so a stall can be told from a slower ingest (a 10-million point once read a
 * request p99 of 334 ms from two stalls, with nothing to tell which).
 */

/** Checkpoints the server has started, requested or timed (pg_stat_bgwriter is cluster-wide). */
async function checkpointsStarted(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select (checkpoints_timed + checkpoints_req)::float8 as n from pg_stat_bgwriter`;
  return row?.n ?? 0;
}

const HISTORY_SPAN_MS = 30 * 24 * 3600 * 1000;
const CHUNK_ROWS = 500_000;

/** Writes rows [from, to) of a history of `total` rows spread over the 30 days before `endMs`. */
async function fillChunk(sql: postgres.Sql, o: { appId: string; endpointId: string; url: string; from: number; to: number; total: number; endMs: number }) {
  // One source for the three tables: row g's time, and the id tail its event, job and attempt share.
  // Ids keep the product's shape (prefix, 12 hex digits of epoch ms, 20 hex digits) and its order.
  const rows = () => sql`
    select g, g % 100 = 99 as dead, s.tail, s.at
    from generate_series(${o.from}::bigint, ${o.to - 1}::bigint) as g,
         lateral (select ${o.endMs - HISTORY_SPAN_MS}::bigint + (g * ${HISTORY_SPAN_MS}::bigint) / ${o.total}::bigint as ms) as t,
         lateral (select lpad(to_hex(t.ms), 12, '0') || lpad(to_hex(g), 20, '0') as tail, to_timestamp(t.ms / 1000.0) as at) as s`;
  await sql`
    insert into events (app_id, id, type, payload, created_at)
    select ${o.appId}, 'evt_' || tail, 'bench.history', ${samplePayload(1)}::json, at from (${rows()}) r`;
  await sql`
    insert into jobs (id, app_id, event_id, endpoint_id, event_type, status, attempt_count, last_attempt_at, delivered_at,
                      created_at, updated_at, end_reason)
    select 'job_' || tail, ${o.appId}, 'evt_' || tail, ${o.endpointId}, 'bench.history',
           case when dead then 'dead' else 'delivered' end, 1, at + interval '40 ms',
           case when dead then null else at + interval '40 ms' end, at, at + interval '40 ms',
           case when dead then 'final_status' end
    from (${rows()}) r`;
  // The headers as the worker records them: the signature redacted.
  await sql`
    insert into attempts (id, app_id, job_id, event_id, endpoint_id, attempt_number, url, request_headers, response_status,
                          response_body, duration_ms, error_class, error_detail, created_at)
    select 'att_' || tail, ${o.appId}, 'job_' || tail, 'evt_' || tail, ${o.endpointId}, 1, ${o.url},
           json_build_object('content-type', 'application/json', 'user-agent', 'Evently-Webhooks/0.1', 'webhook-id', 'job_' || tail,
                             'webhook-timestamp', extract(epoch from at)::bigint::text, 'webhook-signature', '[redacted]'),
           case when dead then 400 else 204 end, '', 5 + (g % 40)::int,
           case when dead then 'http_status' end, case when dead then 'HTTP 400' end, at + interval '40 ms'
    from (${rows()}) r`;
}

export async function runHistory(ctx: CurveContext): Promise<ScalingCurve> {
  const sizes = chosen(ctx, ctx.quick ? [0, 100_000] : [0, 1_000_000, 3_000_000, 10_000_000]);
  // Filling stops before a size whose estimated fill would pass this budget (the machine's speed
  // decides how far it gets). Ten million rows of each table took about 7 minutes on a quiet
  // machine here, and a busy one was on course for 20.
  const fillBudgetMs = ctx.quick ? 60_000 : 30 * 60_000;
  const bench = await openBench(ctx);
  const sql = postgres(bench.stack.env.DATABASE_URL!, { max: 1, onnotice: () => {} });
  const notes: string[] = [];
  try {
    const payload = JSON.parse(samplePayload(1)) as Record<string, unknown>;
    const idleCores = await bench.warmUp(payload);
    const [created] = await bench.addEndpoints(["bench.history"], "history");
    const [endpoint] = await sql<{ endpointId: string; appId: string; url: string }[]>`
      select id as "endpointId", app_id as "appId", url from endpoints where id = ${created!.id}`;
    const target = bench.target({ eventType: "bench.history", payload });
    const byName = (name: string) => defaultPhases(ctx.quick).find((p) => p.name === name)!;
    const phases: PhaseSpec[] = [byName("ingest-single"), byName("burst-batch")];
    const total = Math.max(...sizes);
    const endMs = Date.now() - 60_000;
    // The rows are made to satisfy the foreign keys (every job's event and endpoint, every attempt's
    // job exist). A full run writes them with the per-row checks off, as a bulk load does, which
    // halves the fill; a quick run keeps them on, so Postgres itself still checks how they are made.
    const keysChecked = ctx.quick || !(await sql`set session_replication_role = replica`.then(() => true, () => false));
    const points: ScalingPoint[] = [];
    let rows = 0;
    let spentMs = 0;
    for (const size of sizes) {
      let filledMs = 0;
      let vacuumMs = 0;
      let checkpointMs = 0;
      if (size > rows) {
        const estimate = rows > 0 ? (spentMs / rows) * (size - rows) : 0;
        if (spentMs + estimate > fillBudgetMs) {
          notes.push(`Stopped before ${size.toLocaleString("en-US")} rows: at the fill rate measured so far it would take about ${Math.round(estimate / 60_000)} more minutes.`);
          break;
        }
        const started = Date.now();
        for (let from = rows; from < size; from += CHUNK_ROWS) {
          const to = Math.min(size, from + CHUNK_ROWS);
          await fillChunk(sql, { ...endpoint!, from, to, total, endMs });
          ctx.log(`history: ${to.toLocaleString("en-US")} rows of events, jobs and attempts (${Math.round((to - rows) / ((Date.now() - started) / 1000))} rows/s)`);
        }
        filledMs = Date.now() - started;
        const vacuumStarted = Date.now();
        await sql.unsafe("vacuum (analyze) events, jobs, attempts");
        vacuumMs = Date.now() - vacuumStarted;
        const checkpointStarted = Date.now();
        await sql.unsafe("checkpoint");
        checkpointMs = Date.now() - checkpointStarted;
        spentMs += filledMs + vacuumMs + checkpointMs;
        rows = size;
        ctx.log(
          `history: filled to ${size.toLocaleString("en-US")} rows in ${(filledMs / 1000).toFixed(0)} s, ` +
            `VACUUM ANALYZE ${(vacuumMs / 1000).toFixed(0)} s, CHECKPOINT ${(checkpointMs / 1000).toFixed(0)} s`,
        );
      }
      const checkpointsBefore = await checkpointsStarted(sql);
      const ingest = await bench.measure(target, { ...phases[0]!, name: `history-${size}-ingest` });
      const ingestCheckpoints = (await checkpointsStarted(sql)) - checkpointsBefore;
      const burst = await bench.measure(target, { ...phases[1]!, name: `history-${size}-burst` });
      const [db] = await sql<{ mib: number }[]>`select round(pg_database_size(current_database()) / 1048576.0)::float8 as mib`;
      const point = pointOf(burst, size, size === 0 ? "0" : `${size / 1_000_000}M`, idleCores, {
        ingestPerSecond: ingest.publish.eventsPerSecond,
        ingestP99Ms: ingest.publish.latencyMs.p99,
        ingestCheckpoints,
        drainPerSecond: burst.delivery.drainPerSecond ?? 0,
        ...(filledMs
          ? { fillSeconds: Math.round(filledMs / 1000), vacuumSeconds: Math.round(vacuumMs / 1000), checkpointSeconds: Math.round(checkpointMs / 1000) }
          : {}),
        databaseMiB: db?.mib ?? 0,
      });
      points.push({ ...point, phases: [ingest.spec.name, burst.spec.name] });
    }
    return {
      name: "history",
      title: "History size",
      x: { label: "existing jobs (each with its event and attempt)", log: false },
      method:
        "At each size: `ingest-single` (POST /events, 64 publishers, closed loop, delivery running) for the ingest rate and its request p99, then " +
        "`burst-batch` (POST /events/batch × 500, 8 publishers, delivery stopped) whose backlog is then drained: the drain rate is how fast workers claim and deliver. " +
        "Events/s, CPU per delivery and latency are the burst's (ingest and drain of the same events). Between sizes the history is written with set-based SQL " +
        `(\`insert … select … from generate_series\`, ${CHUNK_ROWS.toLocaleString("en-US")} rows per statement) into the stack's database, then VACUUM ANALYZE and CHECKPOINT; the fill, vacuum and checkpoint times are the database's, not Evently's. ` +
        "Checkpoints during ingest counts those the server started in the ingest phase (a stall there is the checkpoint's writes, not a slower ingest). " +
        (keysChecked
          ? "Foreign keys were checked row by row during the fill."
          : "Foreign-key triggers were off during the fill (`session_replication_role = replica`, as a bulk load does; the rows are made to satisfy them, and `--quick` fills with the checks on)."),
      roles: bench.roles,
      env: {},
      idleCores,
      points,
      columns: [
        { key: "ingestPerSecond", label: "Ingest, single (events/s)" },
        { key: "ingestP99Ms", label: "Ingest request p99 (ms)" },
        { key: "ingestCheckpoints", label: "Checkpoints during ingest" },
        { key: "drainPerSecond", label: "Drain (deliveries/s)" },
        { key: "fillSeconds", label: "Fill (s)" },
        { key: "vacuumSeconds", label: "VACUUM ANALYZE (s)" },
        { key: "checkpointSeconds", label: "CHECKPOINT (s)" },
        { key: "databaseMiB", label: "Database (MiB)" },
      ],
      notes,
    };
  } finally {
    await sql.end({ timeout: 5 });
    await bench.stop();
  }
}
