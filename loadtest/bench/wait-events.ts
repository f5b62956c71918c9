import postgres from "postgres";

/**
 * What the stack's Postgres backends were doing during a phase (`npm run bench -- --wait-events`):
 * `pg_stat_activity` read about every 10 ms, each active backend counted under its pool (its
 * `application_name`, as the CPU split by pool) and what it was doing: on CPU (no wait event; on a
 * saturated machine this includes waiting for a core) or the wait event it reported (the WAL
 * flush, a lock, a data file write…). A figure that falls short while Postgres has cores to spare
 * says here what its backends waited on instead. The sampling connection is to the `postgres`
 * database, so its own cost shows as `other` in the CPU tables, not as the stack's.
 */
export interface WaitProfile {
  samples: number;
  /** Milliseconds the samples covered. */
  ms: number;
  /** Per pool, per state (`CPU` or `type:event`): how many samples saw an active backend so. */
  byPool: Record<string, Record<string, number>>;
}

export interface WaitSampler {
  /** What was sampled since the start or the last cut; sampling goes on into the next window. */
  cut(): WaitProfile;
  /** The last window, and the connection closed. */
  stop(): Promise<WaitProfile>;
}

/**
 * The pool a backend of pg_stat_activity serves, as SQL: its `application_name` (core/db/client.ts
 * names every pool), with " listen" added for a LISTEN connection. The CPU split by pool
 * (stack.ts `backendPools`) and the wait sampler below name pools alike.
 */
export const BACKEND_POOL_SQL = "coalesce(nullif(application_name, ''), 'unnamed') || case when query ilike 'listen %' then ' listen' else '' end";

/** Starts sampling the backends of the database `databaseUrl` names, through the server's `postgres` database. */
export function sampleWaitEvents(databaseUrl: string, intervalMs = 10): WaitSampler {
  const adminUrl = new URL(databaseUrl);
  const database = adminUrl.pathname.slice(1);
  adminUrl.pathname = "/postgres";
  const sql = postgres(adminUrl.toString(), { max: 1, onnotice: () => {}, connection: { application_name: "bench-waits" } });
  let byPool: WaitProfile["byPool"] = {};
  let samples = 0;
  let running = true;
  let startedAt = Date.now();
  const loop = (async () => {
    while (running) {
      const rows = await sql<{ pool: string; state: string }[]>`
        select ${sql.unsafe(BACKEND_POOL_SQL)} as pool,
               coalesce(wait_event_type || ':' || wait_event, 'CPU') as state
        from pg_stat_activity
        where datname = ${database} and state = 'active' and backend_type = 'client backend'`.catch(() => []);
      samples++;
      for (const { pool, state } of rows) {
        const counts = (byPool[pool] ??= {});
        counts[state] = (counts[state] ?? 0) + 1;
      }
      await Bun.sleep(intervalMs);
    }
  })();
  const cut = (): WaitProfile => {
    const window = { samples, ms: Date.now() - startedAt, byPool };
    [byPool, samples, startedAt] = [{}, 0, Date.now()];
    return window;
  };
  return {
    cut,
    async stop() {
      running = false;
      await loop;
      await sql.end({ timeout: 1 }).catch(() => {});
      return cut();
    },
  };
}

/** The report's table: per phase and window, each pool's mean active backends, its share on CPU and its top waits. */
export function waitEventLines(runs: { transport: string; phases: { spec: { name: string }; waits?: { publish: WaitProfile; drain?: WaitProfile } }[] }[]): string[] {
  const lines: string[] = [];
  for (const run of runs) {
    const phases = run.phases.filter((p) => p.waits);
    if (phases.length === 0) continue;
    lines.push(
      `## What the Postgres backends were doing (${run.transport})`,
      "",
      "`pg_stat_activity` sampled about every 10 ms (`--wait-events`): per pool, the mean number of its backends active,",
      "the share of those samples on CPU (no wait event; includes waiting for a core), and the waits seen most, as",
      "shares of the pool's active samples. Pools active in under 2% of the samples are left out.",
      "",
      "| Phase | Window | Pool | Active backends (mean) | On CPU | Waiting on |",
      "| --- | --- | --- | ---: | ---: | --- |",
    );
    for (const p of phases) {
      for (const [window, profile] of [["publishing", p.waits!.publish], ["draining", p.waits!.drain]] as const) {
        if (!profile || profile.samples === 0) continue;
        for (const [pool, counts] of Object.entries(profile.byPool).sort(([a], [b]) => a.localeCompare(b))) {
          const active = Object.values(counts).reduce((a, b) => a + b, 0);
          if (active / profile.samples < 0.02) continue;
          const share = (v: number) => `${Math.round((v * 100) / active)}%`;
          const waits = Object.entries(counts)
            .filter(([state]) => state !== "CPU")
            .sort((a, b) => b[1] - a[1])
            .slice(0, 4)
            .map(([state, v]) => `${state} ${share(v)}`);
          lines.push(
            `| ${p.spec.name} | ${window} | ${pool.replace(/^evently-/, "")} | ${(active / profile.samples).toFixed(2)} | ${share(counts.CPU ?? 0)} | ${waits.join(", ") || "–"} |`,
          );
        }
      }
    }
    lines.push("");
  }
  return lines;
}
