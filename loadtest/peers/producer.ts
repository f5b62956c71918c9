import { randomUUID } from "node:crypto";
import { Batcher } from "../../services/core/batching.ts";
import type { Delivery, Endpoint, Producer, WebhookEvent } from "./peer.ts";

/**
 * A peer's HTTP side, the same two routes as Evently's so the benchmark's generator drives both
 * alike: `POST /events` (`{type, data}`) and `POST /events/batch` (`{events: [...]}`), each answered
 * 202 once the event's jobs (one per endpoint) are in the queue. No authentication: the bearer key
 * the benchmark sends is ignored.
 *
 * Group commit, when on: concurrent requests share one enqueue call (graphile-worker's `addJobs`,
 * BullMQ's `addBulk`) through Evently's own Batcher — idle, a request enqueues alone at once; busy,
 * the requests that arrive while `groupCommitInFlight` calls run share the next one. Off, each
 * request makes its own call (`addJob`, `add` for one event).
 */
export interface ProducerServerOptions {
  producer: Producer;
  endpoints: Endpoint[];
  groupCommit: boolean;
  groupCommitInFlight: number;
}

// Far above the benchmark's largest request (500 events): one enqueue call stays one statement.
const MAX_GROUP_DELIVERIES = 2000;

export function serveProducer(options: ProducerServerOptions): ReturnType<typeof Bun.serve> {
  const { producer, endpoints } = options;
  const batcher = new Batcher<Delivery[], void>(
    async (groups) => {
      await producer.enqueue(groups.flat());
      return groups.map(() => undefined);
    },
    { maxBatch: MAX_GROUP_DELIVERIES, concurrency: options.groupCommitInFlight, weight: (deliveries) => deliveries.length },
  );
  const enqueue = (deliveries: Delivery[]) => (options.groupCommit ? batcher.add(deliveries) : producer.enqueue(deliveries));

  const accept = async (inputs: unknown[]): Promise<WebhookEvent[]> => {
    const timestamp = new Date().toISOString();
    const events = inputs.map((input) => {
      const { type, data } = (input ?? {}) as { type?: unknown; data?: unknown };
      if (typeof type !== "string" || type === "" || data === undefined) throw new BadRequest("each event needs a type and data");
      return { id: `evt_${randomUUID()}`, type, timestamp, data };
    });
    await enqueue(events.flatMap((event) => endpoints.map((endpoint) => ({ endpointId: endpoint.id, event }))));
    return events;
  };

  const handle = (read: (body: unknown) => Promise<unknown>) => async (req: Request) => {
    try {
      return Response.json(await read(await req.json()), { status: 202 });
    } catch (err) {
      if (err instanceof BadRequest || err instanceof SyntaxError) return Response.json({ error: (err as Error).message }, { status: 400 });
      return Response.json({ error: `not enqueued: ${(err as Error).message}` }, { status: 503 });
    }
  };

  return Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    development: false,
    routes: {
      "/ready": { GET: () => new Response("ok") },
      "/events": {
        POST: handle(async (body) => {
          const [event] = await accept([body]);
          return { id: event!.id };
        }),
      },
      "/events/batch": {
        POST: handle(async (body) => {
          const inputs = (body as { events?: unknown } | null)?.events;
          if (!Array.isArray(inputs) || inputs.length === 0) throw new BadRequest("events must be a non-empty array");
          return { data: (await accept(inputs)).map((e) => ({ id: e.id })) };
        }),
      },
    },
    fetch: () => new Response("not found", { status: 404 }),
  });
}

class BadRequest extends Error {}
