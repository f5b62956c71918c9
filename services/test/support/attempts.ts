import type { AttemptRow } from "../../core/attempts/sql.ts";
import type { Sql } from "../../core/db/client.ts";
import { newId } from "../../core/ids.ts";

/** A successful first attempt at a stored job, its ids read from the job; `over` changes any field. */
export async function attemptAt(sql: Sql, jobId: string, over: Partial<AttemptRow> = {}): Promise<AttemptRow> {
  const [job] = await sql<{ appId: string; eventId: string; endpointId: string }[]>`
    select app_id, event_id, endpoint_id from jobs where id = ${jobId}`;
  return {
    id: newId("attempt"), ...job!, jobId, attemptNumber: 1, url: "https://hooks.example.com/x", requestHeaders: {}, responseStatus: 200,
    responseBody: "ok", durationMs: 1, errorClass: null, errorDetail: null, createdAt: new Date(), ...over,
  };
}
