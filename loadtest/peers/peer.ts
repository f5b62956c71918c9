/**
 * The peers: what a team would build in an afternoon instead of adopting Evently — a webhook
 * sender on an off-the-shelf job queue. Each peer is a producer process (HTTP in, jobs enqueued)
 * and a worker process (jobs out, signed POSTs), the two halves talking only through the queue,
 * like Evently's api and worker roles. This file holds what the two peers share: the job they
 * carry, their settings, and the driver each queue implements.
 */

export const PEER_NAMES = ["graphile", "bullmq"] as const;
export type PeerName = (typeof PEER_NAMES)[number];

export function isPeerName(name: string): name is PeerName {
  return (PEER_NAMES as readonly string[]).includes(name);
}

/**
 * The process groups whose CPU serves each peer (names as observe.ts's sampleCpu reports them): its
 * two processes and its queue's server. Postgres's background processes count for graphile-worker
 * as they count for Evently; Redis is given by its pid (INFO's process_id).
 */
export const PEER_STACK_GROUPS: Record<PeerName, string[]> = {
  graphile: ["producer", "worker", "postgres", "postgres bg"],
  bullmq: ["producer", "worker", "redis"],
};

/** A subscriber: where the worker POSTs and the Standard Webhooks secret it signs with. */
export interface Endpoint {
  id: string;
  url: string;
  secret: string;
}

/** The delivered body, shaped as Evently's envelope so the sink reads the event's creation time the same way. */
export interface WebhookEvent {
  id: string;
  type: string;
  /** Creation time, ISO 8601: set by the producer when the request arrives. */
  timestamp: string;
  data: unknown;
}

/** One job: one event for one endpoint. */
export interface Delivery {
  endpointId: string;
  event: WebhookEvent;
}

/** A peer's knobs; each driver has its defaults (the tuned choice) and reads only its own. */
export type PeerSettings = Record<string, number | boolean>;

/** What the launching process hands both child processes (as JSON in PEER_CONFIG). */
export interface PeerConfig {
  /** The queue's server: a Postgres database URL (graphile-worker) or a Redis URL (BullMQ). */
  queueUrl: string;
  /** The run's own queue (BullMQ) — a scratch database already makes graphile-worker's its own. */
  queueName: string;
  endpoints: Endpoint[];
  settings: PeerSettings;
}

/** Where a peer's queue lives for one run, made by the launching process before the peer starts. */
export interface ProvisionedQueue {
  queueUrl: string;
  queueName: string;
  /** The queue server's process, when it is one process (Redis): its CPU counts for the peer. */
  pids: Record<string, number>;
  /** The scratch database (graphile-worker): its Postgres backends count for the peer. */
  database?: string;
  /** Tables autovacuum would look after (a Postgres queue): the bench vacuums them when it is off, as for Evently. */
  vacuumTables?: string[];
  /** Removes everything the run made on the server. */
  remove(): Promise<void>;
  /** What of the run is still on the server (databases, keys): 0 after remove(). */
  leftovers(): Promise<number>;
}

export interface Producer {
  /** Resolves once every delivery is durably in the queue (as durable as the server is configured to be). */
  enqueue(deliveries: Delivery[]): Promise<void>;
  close(): Promise<void>;
}

export interface PeerDriver {
  name: PeerName;
  /** One line for the report: the queue and how the peer uses it. */
  summary: string;
  /** The server the queue lives on, whose CPU counts for the peer: "Postgres" or "Redis". */
  queueServer: string;
  /** The tuned settings; a run may override any of them (tune.ts tries several). */
  defaults: PeerSettings;
  /** What Evently gives that this sender does not: the report lists it next to the figures. */
  doesNotGive: string[];
  provision(runId: string): Promise<ProvisionedQueue>;
  /** In the producer process. */
  openProducer(config: PeerConfig): Promise<Producer>;
  /** In the worker process: runs `deliver` for each job; a throw is a failed attempt the queue retries. */
  startWorker(config: PeerConfig, deliver: (delivery: Delivery) => Promise<void>): Promise<{ close(): Promise<void> }>;
}

/** The driver's defaults with `overrides` applied; an unknown name or a value of the wrong kind is an error. */
export function settingsOf(driver: PeerDriver, overrides: Record<string, string | number | boolean> = {}): PeerSettings {
  const settings = { ...driver.defaults };
  for (const [name, raw] of Object.entries(overrides)) {
    const fallback = driver.defaults[name];
    if (fallback === undefined) throw new Error(`${driver.name} has no setting ${name} (it has ${Object.keys(driver.defaults).join(", ")})`);
    if (typeof fallback === "boolean") {
      if (raw !== true && raw !== false && raw !== "true" && raw !== "false") throw new Error(`${driver.name} ${name} must be true or false, not ${raw}`);
      settings[name] = raw === true || raw === "true";
    } else {
      if (!Number.isFinite(Number(raw))) throw new Error(`${driver.name} ${name} must be a number, not ${raw}`);
      settings[name] = Number(raw);
    }
  }
  return settings;
}
