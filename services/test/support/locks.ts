import type { Sql } from "../../core/db/client.ts";

/**
 * Waits, for at most two seconds, until `count` of this database's backends wait for a lock: how a
 * test orders the transactions of a race it stages. Returns either way; the test's assertions say
 * whether the race went as staged.
 */
export async function untilLockWaits(sql: Sql, count: number): Promise<void> {
  for (const deadline = Date.now() + 2_000; Date.now() < deadline; await Bun.sleep(10)) {
    const [row] = await sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
    if (row!.waiting >= count) return;
  }
}
