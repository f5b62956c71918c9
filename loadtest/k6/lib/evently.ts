import { check, fail } from "k6";
import http, { type RefinedResponse, type ResponseType } from "k6/http";
import { Counter } from "k6/metrics";
import type { Config } from "./config.ts";

/**
 * The few Evently and sink calls the scripts share. Each run gets its own event type and its own
 * sink scopes, so runs against a shared API or sink neither see nor count each other's deliveries.
 */
export interface Target {
  runId: string;
  eventType: string;
  endpoints: Array<{ id: string; scope: string }>;
  startedAt: string;
}

export const eventsAccepted = new Counter("events_accepted");

function headers(cfg: Config): Record<string, string> {
  const h: Record<string, string> = { "content-type": "application/json" };
  // The admin key reaches an application's routes only with the application named.
  if (cfg.adminApiKey) {
    h.authorization = `Bearer ${cfg.adminApiKey}`;
    h["evently-application"] = cfg.application;
  }
  return h;
}

function expectStatus(res: RefinedResponse<ResponseType | undefined>, status: number, what: string): void {
  if (res.status !== status) fail(`${what}: expected ${status}, got ${res.status} ${String(res.body).slice(0, 300)}`);
}

function postJson(url: string, body: unknown, hdrs: Record<string, string>, name: string) {
  return http.post(url, JSON.stringify(body), { headers: hdrs, tags: { name } });
}

/**
 * setup(): FANOUT endpoints pointing at `<SINK_URL>/hooks/<scope>`, each routed to a fresh event
 * type, with their secrets registered at the sink so every delivery's signature is checked.
 */
export function createTarget(cfg: Config, script: string, resetSink: boolean): Target {
  const health = http.get(`${cfg.sinkControlUrl}/health`);
  if (health.status !== 200) fail(`sink not reachable at ${cfg.sinkControlUrl} (status ${health.status})`);
  if (resetSink) expectStatus(http.post(`${cfg.sinkControlUrl}/reset`), 200, "reset sink");

  const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  const eventType = `loadtest.${script}.${runId}`;
  const endpoints: Target["endpoints"] = [];
  for (let i = 0; i < cfg.fanout; i++) {
    const scope = `${script}-${runId}-${i}`;
    const created = postJson(
      `${cfg.apiUrl}/endpoints`,
      { url: `${cfg.sinkUrl}/hooks/${scope}`, description: `k6 ${script} run ${runId}`, metadata: { loadtest: runId } },
      headers(cfg),
      "POST /endpoints",
    );
    expectStatus(created, 201, "create endpoint");
    const { id, secret } = created.json() as { id: string; secret: string };
    expectStatus(
      postJson(`${cfg.apiUrl}/routes`, { endpointId: id, eventType }, headers(cfg), "POST /routes"),
      201,
      "create route",
    );
    expectStatus(postJson(`${cfg.sinkControlUrl}/secrets`, { secret, scope }, {}, "POST sink /secrets"), 201, "register secret");
    endpoints.push({ id, scope });
  }
  return { runId, eventType, endpoints, startedAt: new Date().toISOString() };
}

/** teardown(): remove the run's endpoints (their routes and remaining jobs go with them). */
export function removeTarget(cfg: Config, target: Target): void {
  for (const e of target.endpoints) http.del(`${cfg.apiUrl}/endpoints/${e.id}`, null, { headers: headers(cfg), tags: { name: "DELETE /endpoints/:id" } });
}

let padding = "";

/** Event `data` of about `bytes` bytes: a few realistic fields plus padding. */
function eventData(cfg: Config, seq: number): Record<string, unknown> {
  if (padding.length !== cfg.payloadBytes) padding = "x".repeat(Math.max(0, cfg.payloadBytes - 120));
  return { seq, orderId: `ord_${seq}`, amount: (seq * 7919) % 100000, currency: "EUR", note: padding };
}

/** One iteration's publish: POST /events, or POST /events/batch when BATCH_SIZE > 1. */
export function publish(cfg: Config, target: Target, seq: number): boolean {
  const hdrs = headers(cfg);
  if (cfg.batchSize === 1) {
    const res = postJson(`${cfg.apiUrl}/events`, { type: target.eventType, data: eventData(cfg, seq) }, hdrs, "POST /events");
    const ok = check(res, { "event accepted (202)": (r) => r.status === 202 });
    if (ok) eventsAccepted.add(1);
    return ok;
  }
  const events = [];
  for (let i = 0; i < cfg.batchSize; i++) events.push({ type: target.eventType, data: eventData(cfg, seq * cfg.batchSize + i) });
  const res = postJson(`${cfg.apiUrl}/events/batch`, { events }, hdrs, "POST /events/batch");
  const ok = check(res, {
    "batch accepted (202)": (r) => r.status === 202,
    "batch returns every event": (r) => r.status === 202 && (r.json("data") as unknown[] | undefined)?.length === cfg.batchSize,
  });
  if (ok) eventsAccepted.add(cfg.batchSize);
  return ok;
}
