import { Producer, type Accepted, type Production } from "../producer.ts";
import type { Receivers } from "../receivers.ts";
import { check, settleAndCount, withStack, type Check, type Scenario } from "../scenario.ts";
import type { FaultStack, Transport } from "../stack.ts";

const LIMIT = 50;
const LIMIT_SLACK = 55;
const LIMITED_RATE = 200;
const LIMITED_FOR_MS = 10_000;
const OPEN_MS = 3000;
// A window counts from when the API first showed it open, not from its recorded start: the worker
// that opens a circuit stamps `since` when its write begins, and on a loaded machine that write can
// take hundreds of milliseconds to commit, while the other worker keeps sending. The other worker
// then hears of it by notification; attempts this soon after the window was seen are not counted.
const OPEN_GRACE_MS = 250;
// FIFO sends one delivery at a time and holds the rest, a few a second under this load: kept small.
const FIFO_EVENTS = 30;

/**
 * Per-endpoint flow control under load, with two workers sharing it:
 * - rate limit: 200 events/s for 10 s to an endpoint limited to 50/s: no 1 s window after the first
 *   second holds more than 55 attempt starts, across both workers (measured until the limit is
 *   lifted to let the backlog drain);
 * - circuit breaker: an endpoint failing every delivery opens its circuit, and no attempt starts
 *   while it is open (one probe per CIRCUIT_OPEN_MS); healed, it closes and its backlog goes out;
 * - FIFO: an endpoint with `ordering: fifo` that fails a quarter of first tries receives the
 *   delivered events in the order they were accepted.
 * Runs only where the API has these fields (rateLimitPerSecond, circuit, ordering); otherwise it
 * reports itself skipped, naming what is missing.
 */
export function flowControl(transport: Transport): Scenario {
  const name = `flow-control[${transport}]`;
  const env = {
    RETRY_SCHEDULE: Array(20).fill("300ms").join(","),
    RETRY_JITTER: "0",
    CIRCUIT_FAILURE_THRESHOLD: "5",
    CIRCUIT_FAILURE_RATIO: "0",
    CIRCUIT_OPEN_MS: String(OPEN_MS),
    CIRCUIT_OPEN_MAX_MS: String(OPEN_MS),
  };
  return {
    name,
    run: (log) =>
      withStack({ name, transport, workers: 2, env }, log, async (stack, receivers) => {
        let failing = true;
        receivers.on("/failing", () => (failing ? new Response("down", { status: 500 }) : new Response("ok")));
        const fifoFlight = { now: 0, max: 0 };
        const firstTries = new Set<string>();
        receivers.on("/fifo", async (_req, { body, webhookId }) => {
          fifoFlight.max = Math.max(fifoFlight.max, ++fifoFlight.now);
          try {
            await Bun.sleep(5);
            const { data } = JSON.parse(body) as { data: { n: number } };
            const first = !firstTries.has(webhookId);
            firstTries.add(webhookId);
            return first && data.n % 4 === 3 ? new Response("not yet", { status: 500 }) : new Response("ok");
          } finally {
            fifoFlight.now--;
          }
        });
        const limited = await stack.subscribe(`${receivers.url}/limited`, "faults.limited", { rateLimitPerSecond: LIMIT });
        const broken = await stack.subscribe(`${receivers.url}/failing`, "faults.failing");
        const fifo = await stack.subscribe(`${receivers.url}/fifo`, "faults.fifo", { ordering: "fifo" });
        const missing = [
          limited.rateLimitPerSecond !== LIMIT && "rateLimitPerSecond",
          typeof broken.circuit?.state !== "string" && "circuit",
          fifo.ordering !== "fifo" && "ordering",
        ].filter(Boolean);
        if (missing.length > 0) return { name, checks: [], skipped: `the API's endpoints lack ${missing.join(", ")}` };

        const opens = watchCircuit(stack, broken.id);
        const limitedRun = new Producer({ apiUrl: () => stack.apiUrl, appKey: stack.appKey, rate: LIMITED_RATE, durationMs: LIMITED_FOR_MS, type: () => "faults.limited", keyPrefix: `${name}-rl` }).start();
        const failingRun = new Producer({ apiUrl: () => stack.apiUrl, appKey: stack.appKey, rate: 10, durationMs: 8000, type: () => "faults.failing", keyPrefix: `${name}-cb` }).start();
        const fifoAccepted = await produceInOrder(stack, FIFO_EVENTS, `${name}-fifo`);
        const [limitedDone, failingDone] = await Promise.all([limitedRun.finish(), failingRun.finish()]);
        await Bun.sleep(Math.max(0, 9000 - (Date.now() - opens.startedAt)));
        failing = false;
        log("the failing endpoint answers 200 from now on");
        // The limit is measured over the stream and a little after; then lifted, so the backlog it
        // built (three times what it let through) drains faster than at 50/s.
        await Bun.sleep(Math.max(0, LIMITED_FOR_MS + 3000 - (Date.now() - opens.startedAt)));
        const liftedAt = Date.now();
        const lifted = await stack.api("PATCH", `/endpoints/${limited.id}`, { rateLimitPerSecond: null });
        log(`rate limit lifted (${lifted.status}) to let the backlog drain`);

        const production: Production = {
          accepted: [...limitedDone.accepted, ...failingDone.accepted, ...fifoAccepted],
          answers: [...limitedDone.answers, ...failingDone.answers],
          givenUp: [...limitedDone.givenUp, ...failingDone.givenUp],
          conflictingKeys: [],
        };
        const { tally, checks } = await settleAndCount(stack, receivers, production, log, 90_000);
        const windows = opens.stop();
        return {
          name,
          tally,
          checks: [
            ...checks,
            await rateCheck(stack, limited.id, liftedAt, log),
            ...(await circuitChecks(stack, broken.id, windows, log)),
            fifoCheck(receivers, fifoAccepted, fifoFlight.max, log),
          ],
        };
      }),
  };
}

/** Events sent one after another (each after the previous 202), so accepted order is unambiguous. */
async function produceInOrder(stack: FaultStack, count: number, keyPrefix: string): Promise<Accepted[]> {
  const accepted: Accepted[] = [];
  for (let n = 0; n < count; n++) {
    const key = `${keyPrefix}-${n}`;
    for (;;) {
      const sentAt = Date.now();
      const res = await stack.api("POST", "/events", { type: "faults.fifo", data: { n }, idempotencyKey: key }).catch(() => null);
      if (res?.status === 202) {
        accepted.push({ key, id: res.body.id, type: "faults.fifo", sentAt, answeredAt: Date.now() });
        break;
      }
      await Bun.sleep(100);
    }
    await Bun.sleep(20);
  }
  return accepted;
}

/**
 * The most attempts started in any 1 s window that begins a second or more after the first one.
 * Start times, as the workers recorded them, because that is what the limit governs: on a loaded
 * machine the receiver's arrival times bunch up by the time the requests take to get there.
 */
async function rateCheck(stack: FaultStack, endpointId: string, until: number, log: (msg: string) => void): Promise<Check> {
  const rows = await stack.sql<{ createdAt: Date }[]>`
    select created_at as "createdAt" from attempts where endpoint_id = ${endpointId} and created_at < ${new Date(until)}`;
  const times = rows.map((r) => r.createdAt.getTime()).sort((a, b) => a - b);
  let max = 0;
  let j = 0;
  for (let i = 0; i < times.length; i++) {
    if (times[i]! < times[0]! + 1000) continue;
    if (j < i) j = i;
    while (j < times.length && times[j]! < times[i]! + 1000) j++;
    max = Math.max(max, j - i);
  }
  const spanS = times.length ? (times.at(-1)! - times[0]!) / 1000 : 0;
  log(`rate limit ${LIMIT}/s: ${times.length} attempts in ${spanS.toFixed(1)} s before it was lifted (${(times.length / Math.max(spanS, 1)).toFixed(1)}/s), at most ${max} in any 1 s window after the first second`);
  return check(`rate limit: at most ${LIMIT_SLACK} attempts started in any 1 s window`, times.length > 0 && max <= LIMIT_SLACK, `max ${max} per second`);
}

interface OpenWindow {
  since: number;
  /** When the poll first saw it: the circuit was committed open by then. */
  seenAt: number;
}

/** Polls the endpoint's circuit; each distinct `since` of an `open` state is one open window. */
function watchCircuit(stack: FaultStack, endpointId: string): { startedAt: number; stop(): OpenWindow[] } {
  const windows = new Map<number, OpenWindow>();
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const res = await stack.api("GET", `/endpoints/${endpointId}`).catch(() => null);
      const circuit = res?.body?.circuit;
      if (circuit?.state === "open" && circuit.since) {
        const since = Date.parse(circuit.since);
        if (!windows.has(since)) windows.set(since, { since, seenAt: Date.now() });
      }
      await Bun.sleep(100);
    }
  })();
  return {
    startedAt: Date.now(),
    stop: () => ((stopped = true), [...windows.values()].sort((a, b) => a.since - b.since)),
  };
}

async function circuitChecks(stack: FaultStack, endpointId: string, windows: OpenWindow[], log: (msg: string) => void): Promise<Check[]> {
  let during = 0;
  for (const w of windows) {
    const inside = await stack.sql<{ jobId: string; attemptNumber: number; createdAt: Date }[]>`
      select job_id as "jobId", attempt_number as "attemptNumber", created_at as "createdAt" from attempts
       where endpoint_id = ${endpointId}
         and created_at >= ${new Date(Math.max(w.since, w.seenAt) + OPEN_GRACE_MS)} and created_at < ${new Date(w.since + OPEN_MS)}`;
    during += inside.length;
    // When this check fails, how far into the window each attempt started says which race let it through.
    for (const a of inside)
      log(`circuit: attempt ${a.attemptNumber} of ${a.jobId} started ${a.createdAt.getTime() - w.since} ms into an open window seen ${w.seenAt - w.since} ms in`);
  }
  const [total] = await stack.sql<{ n: number }[]>`select count(*)::int as n from attempts where endpoint_id = ${endpointId}`;
  const end = await stack.api("GET", `/endpoints/${endpointId}`);
  log(`circuit: opened ${windows.length} times (${((windows.length * OPEN_MS) / 1000).toFixed(0)} s open), ${during} attempts while open, ${total!.n} attempts in all; now ${end.body?.circuit?.state}`);
  return [
    check("circuit opened on consistent failure", windows.length > 0, `${windows.length} open windows`),
    check("no attempts while the circuit was open", during === 0, `${during} attempts in ${windows.length} windows`),
    check("circuit closed once the endpoint recovered", end.body?.circuit?.state === "closed", `${end.body?.circuit?.state}`),
  ];
}

function fifoCheck(receivers: Receivers, accepted: Accepted[], maxInFlight: number, log: (msg: string) => void): Check {
  const order: string[] = [];
  const seen = new Set<string>();
  for (const r of [...receivers.at("/fifo")].sort((a, b) => a.receivedAt - b.receivedAt)) {
    if (!r.answered || !r.eventId || seen.has(r.eventId)) continue;
    seen.add(r.eventId);
    order.push(r.eventId);
  }
  const expected = accepted.map((a) => a.id).filter((id) => seen.has(id));
  const firstOff = order.findIndex((id, i) => id !== expected[i]);
  log(`fifo: ${order.length} of ${accepted.length} delivered, ${firstOff < 0 ? "in accepted order" : `out of order from #${firstOff}`}; at most ${maxInFlight} in flight`);
  return check("fifo: received in accepted order", order.length === accepted.length && firstOff < 0, firstOff < 0 ? `${order.length} in order` : `first out of order at #${firstOff}`);
}
