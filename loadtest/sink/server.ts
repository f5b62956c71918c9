import { delayFor, FaultError, faultsFromQuery, isActive, mergeFaults, NO_FAULTS, type Faults } from "./faults.ts";
import { renderMetrics } from "./metrics.ts";
import { SinkState, type SinkStats } from "./state.ts";
import { checkDelivery, envelopeTimestampMs, SecretRegistry } from "./verify.ts";

export interface SinkOptions {
  /** 0 picks a free port (tests, in-process benchmark). Default 0. */
  port?: number;
  /** Default 127.0.0.1; the CLI binds 0.0.0.0 so other containers reach it. */
  hostname?: string;
  /** Secrets to verify with: a plain string is global, `{scope, secret}` binds it to /hooks/<scope>. */
  secrets?: Array<string | { scope: string; secret: string }>;
  faults?: Partial<Faults>;
  /** Reject webhook-timestamp further than this from now, in seconds; 0 disables. Default 300. */
  timestampToleranceS?: number;
  /** webhook-ids remembered for duplicate detection (memory ≈ 100 B each). Default 5,000,000. */
  dedupWindow?: number;
}

export interface WaitOptions {
  /** Return once this many unique deliveries have arrived. */
  unique?: number;
  /** Return once no new unique delivery arrived for this long (counted from the wait's start at the earliest). */
  quietMs?: number;
  /** Return after this long whatever happened. Default 60 s. */
  timeoutMs?: number;
}

export interface Sink {
  /** Base URL, e.g. http://127.0.0.1:41234 — deliveries go to `${url}/hooks/<scope>` or `${url}/`. */
  url: string;
  port: number;
  stats(): SinkStats;
  /** Clears the measurements (not secrets or faults) and returns the ones it cleared. */
  reset(): SinkStats;
  stop(): Promise<void>;
  addSecret(secret: string, scope?: string): void;
  /** Replaces the global faults; `{}` turns them off. */
  setFaults(faults: Partial<Faults>): Faults;
  waitFor(options: WaitOptions): Promise<SinkStats>;
}

const json = (body: unknown, status = 200) => Response.json(body, { status });

/**
 * The wall-clock time of receipt, to compare with the event's timestamp (the API's wall clock), with
 * the sub-millisecond precision of the monotonic clock while the two agree. They part when the
 * system clock is stepped (seen on virtual machines); latencies from the monotonic one alone then
 * read all zero or far too long for the rest of the process.
 */
function receivedNow(): number {
  const wall = Date.now();
  const precise = performance.timeOrigin + performance.now();
  return Math.abs(precise - wall) < 1 ? precise : wall;
}

// A wrong method on a control path falls through to `fetch`; it must not count as a delivery.
const CONTROL_PATHS = new Set(["/health", "/stats", "/metrics", "/reset", "/faults", "/secrets"]);
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  return url.slice(start, query < 0 ? undefined : query);
}
const MAX_WAIT_MS = 600_000;

export function startSink(options: SinkOptions = {}): Sink {
  const state = new SinkState(options.dedupWindow ?? 5_000_000);
  const secrets = new SecretRegistry();
  for (const s of options.secrets ?? []) {
    if (typeof s === "string") secrets.add(s);
    else secrets.add(s.secret, s.scope);
  }
  const toleranceS = options.timestampToleranceS ?? 300;
  let faults = mergeFaults(NO_FAULTS, options.faults ?? {});
  let faultsActive = isActive(faults);

  const setFaults = (input: Record<string, unknown>): Faults => {
    faults = mergeFaults(NO_FAULTS, input);
    faultsActive = isActive(faults);
    return faults;
  };

  // The hot path: kept to one body read, at most one HMAC per key tried, a few map operations.
  async function deliver(req: Request, scope: string): Promise<Response> {
    const receivedAt = receivedNow();
    state.received++;
    const body = await req.text();
    const headers = req.headers;
    const id = headers.get("webhook-id");
    const keys = secrets.keysFor(scope);
    if (keys.length > 0) {
      const result = checkDelivery(
        keys,
        id,
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
        body,
        receivedAt,
        toleranceS,
      );
      if (result !== "ok") {
        state.rejectInvalid(result);
        return new Response(result, { status: result === "missing_headers" ? 400 : 401 });
      }
    } else if (!id) {
      state.rejectInvalid("missing_headers");
      return new Response("missing_headers", { status: 400 });
    }

    let f = faults;
    let active = faultsActive;
    const q = req.url.indexOf("?");
    if (q >= 0) {
      try {
        f = faultsFromQuery(faults, new URLSearchParams(req.url.slice(q + 1)));
        active = isActive(f);
      } catch (err) {
        state.rejectInvalid("bad_fault_query");
        return new Response((err as Error).message, { status: 400 });
      }
    }
    if (active) {
      const delay = delayFor(f);
      if (delay > 0) await Bun.sleep(delay);
      if (f.failFirst > 0) {
        const failed = state.attempts.get(id!) ?? 0;
        if (failed < f.failFirst) {
          state.attempts.set(id!, failed + 1);
          state.injectedFailures++;
          return new Response("injected failure", { status: f.status });
        }
      }
      if (f.failRate > 0 && Math.random() < f.failRate) {
        state.injectedFailures++;
        return new Response("injected failure", { status: f.status });
      }
    }
    if (keys.length === 0) state.unverified++;
    state.accept(id!, scope, receivedAt, envelopeTimestampMs(body));
    return new Response(null, { status: 204 });
  }

  async function waitFor(w: WaitOptions): Promise<SinkStats> {
    const start = Date.now();
    const deadline = start + Math.min(w.timeoutMs ?? 60_000, MAX_WAIT_MS);
    for (;;) {
      const now = Date.now();
      if (w.unique !== undefined && state.unique >= w.unique) break;
      if (w.quietMs !== undefined && now - Math.max(state.lastAtMs, start) >= w.quietMs) break;
      if (now >= deadline) break;
      await Bun.sleep(20);
    }
    return state.snapshot();
  }

  async function readJson(req: Request): Promise<Record<string, unknown>> {
    const text = await req.text();
    const value: unknown = text.trim() === "" ? {} : JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new FaultError("body must be a JSON object");
    return value as Record<string, unknown>;
  }

  const num = (v: string | null) => (v === null || v === "" ? undefined : Number(v));

  const server = Bun.serve({
    port: options.port ?? 0,
    hostname: options.hostname ?? "127.0.0.1",
    development: false,
    routes: {
      "/health": { GET: () => new Response("ok") },
      "/stats": {
        GET: async (req) => {
          const q = new URL(req.url).searchParams;
          const w = { unique: num(q.get("waitUnique")), quietMs: num(q.get("quietMs")), timeoutMs: num(q.get("timeoutMs")) };
          if (Object.values(w).some((v) => v !== undefined && !(v >= 0))) return json({ error: "wait parameters must be numbers ≥ 0" }, 400);
          return json(w.unique === undefined && w.quietMs === undefined ? state.snapshot() : await waitFor(w));
        },
      },
      "/metrics": {
        GET: () => new Response(renderMetrics(state.snapshot()), { headers: { "content-type": "text/plain; version=0.0.4" } }),
      },
      "/reset": { POST: () => json(sink.reset()) },
      "/faults": {
        GET: () => json(faults),
        DELETE: () => json(setFaults({})),
        POST: async (req) => {
          try {
            return json(setFaults(await readJson(req)));
          } catch (err) {
            return json({ error: (err as Error).message }, 400);
          }
        },
      },
      "/secrets": {
        GET: () => json({ count: secrets.size }),
        DELETE: () => {
          secrets.clear();
          return json({ count: 0 });
        },
        POST: async (req) => {
          try {
            const body = await readJson(req);
            const { secret, scope } = body;
            if (typeof secret !== "string" || !secret.startsWith("whsec_")) throw new Error("secret must be a whsec_… string");
            if (scope !== undefined && (typeof scope !== "string" || !/^[\w.-]{1,200}$/.test(scope)))
              throw new Error("scope must be 1-200 letters, digits, '_', '.' or '-'");
            secrets.add(secret, scope as string | undefined);
            return json({ count: secrets.size }, 201);
          } catch (err) {
            return json({ error: (err as Error).message }, 400);
          }
        },
      },
      "/hooks/:scope": { POST: (req) => deliver(req, req.params.scope) },
    },
    // Anything else: POST is a delivery without a scope (global secrets), the rest is unknown.
    fetch: (req) => {
      if (CONTROL_PATHS.has(pathOf(req.url))) return new Response("method not allowed", { status: 405 });
      return req.method === "POST" ? deliver(req, "") : new Response("not found", { status: 404 });
    },
  });

  const port = server.port!;
  const host = !options.hostname || options.hostname === "0.0.0.0" ? "127.0.0.1" : options.hostname;
  const sink: Sink = {
    url: `http://${host}:${port}`,
    port,
    stats: () => state.snapshot(),
    reset: () => {
      const before = state.snapshot();
      state.reset();
      return before;
    },
    stop: () => server.stop(true),
    addSecret: (secret, scope) => secrets.add(secret, scope),
    setFaults: (f) => setFaults(f),
    waitFor,
  };
  return sink;
}
