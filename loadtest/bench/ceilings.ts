import amqp from "amqplib";
import { randomBytes } from "node:crypto";
import os from "node:os";
import postgres from "postgres";
import { coreSpeedApart, timesPerSecond } from "./core-speed.ts";
import { runClosedLoop } from "./generator.ts";
import { kernelSpeedApart, type KernelSpeed } from "./kernel-speed.ts";

/**
 * This machine's raw ceilings for the work Evently does, measured without Evently: how fast Postgres
 * commits event-sized rows, how fast RabbitMQ confirms persistent messages, how fast Bun.serve
 * answers a small JSON POST. The benchmark report puts Evently's numbers next to these, so a reader
 * can tell "slow pipeline" from "slow machine". Every probe is bounded in time, uses scratch objects
 * (a database, a queue, a child process) and removes them however it ends.
 */
export interface CeilingOptions {
  /** ~1 s per probe instead of ~5 s. */
  quick?: boolean;
  /** Any database on the server; the probe creates and drops its own scratch database beside it. */
  databaseUrl?: string;
  amqpUrl?: string;
  /** Match the product's AMQP_QUEUE_TYPE (quorum by default). */
  queueType?: "quorum" | "classic";
  /** Measure RabbitMQ (default true); a run of the Postgres transport alone has no use for it. */
  rabbitmq?: boolean;
  log?: (msg: string) => void;
}

export type Probe<T> = T | { error: string };

export interface PostgresCeiling {
  batchSize: number;
  batchConcurrency: number;
  batchRowsPerSec: number;
  singleConcurrency: number;
  singleRowsPerSec: number;
  payloadBytes: number;
}

export interface AmqpCeiling {
  queueType: string;
  window: number;
  messageBytes: number;
  messagesPerSec: number;
}

export interface HttpCeiling {
  concurrency: number;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/**
 * How much work one core does in this hour, Evently aside. This machine's raw ceilings differ up to
 * 2.8× from one hour to another (500-row inserts: 186,425 against 66,314 rows/s) with no steal time
 * reported; these say whether a core itself was slower.
 */
export interface CpuCeiling {
  /** Standard Webhooks signatures (HMAC-SHA256 of id.timestamp.body, base64) of a ~300-byte body per second, one JS thread (core-speed.ts). */
  signaturesPerSec: number;
  /** JSON.parse then JSON.stringify of a ~300-byte payload per second, one JS thread (core-speed.ts). */
  jsonRoundTripsPerSec: number;
  /** GiB per second one thread copies between two 64 MiB buffers: memory, not cache, since bulk row work slowed most in slow hours. */
  memoryCopyGiBPerSec: number;
  /** Rows per second one Postgres backend turns into text, hashes and sums (generate_series, JIT off): its executor's speed on one core. */
  postgresRowsPerSec: number;
}

export interface Ceilings {
  quick: boolean;
  measuredAt: string;
  host: { cpus: number; memoryGiB: number; platform: string; bun: string };
  postgres: Probe<PostgresCeiling>;
  /** Two sizes: one job per message, and an AMQP_JOBS_PER_MESSAGE-sized (64 jobs) batch. Absent when not measured. */
  rabbitmq: { single?: Probe<AmqpCeiling>; batch64?: Probe<AmqpCeiling> };
  http: Probe<HttpCeiling>;
  /** Absent in reports made before it was measured. */
  cpu?: Probe<CpuCeiling>;
  /** The WAL flush and a process's wake-up (kernel-speed.ts); absent in reports made before it was measured. */
  kernel?: Probe<KernelSpeed>;
}

const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672";
const suffix = () => `${process.pid}_${randomBytes(3).toString("hex")}`;

/** A ~300-byte event payload, varied per row so nothing compresses or dedupes unrealistically. */
export function samplePayload(i: number): string {
  return JSON.stringify({
    orderId: `ord_${i.toString(36).padStart(10, "0")}`,
    amount: (i * 7919) % 100_000,
    currency: "EUR",
    customer: { id: `cus_${(i * 31).toString(36)}`, email: `customer${i % 1000}@example.com` },
    items: [
      { sku: `sku-${i % 97}`, qty: 1 + (i % 5), price: 1999 },
      { sku: `sku-${i % 89}`, qty: 1, price: 499 },
    ],
    note: "benchmark payload ".repeat(5),
  });
}

/**
 * Runs the workload for a fifth of the measuring time and throws the numbers away: pools open their
 * connections, keep-alive sockets are established and the JIT has compiled the loop before we count.
 */
async function warmUp(concurrency: number, durationMs: number, send: (i: number) => Promise<unknown>): Promise<void> {
  await runClosedLoop({ concurrency, durationMs: Math.max(200, durationMs / 5), send });
}

async function safely<T>(name: string, log: (m: string) => void, fn: () => Promise<T>): Promise<Probe<T>> {
  try {
    const result = await fn();
    log(`ceiling ${name}: ${JSON.stringify(result)}`);
    return result;
  } catch (err) {
    log(`ceiling ${name} failed: ${(err as Error).message}`);
    return { error: (err as Error).message };
  }
}

export async function measureCeilings(options: CeilingOptions = {}): Promise<Ceilings> {
  const quick = options.quick ?? false;
  const ms = quick ? 1000 : 5000;
  const log = options.log ?? (() => {});
  const amqpUrl = options.amqpUrl ?? process.env.AMQP_URL ?? DEFAULT_AMQP_URL;
  const queueType = options.queueType ?? (process.env.AMQP_QUEUE_TYPE === "classic" ? "classic" : "quorum");
  // Probes run one after another: run together they would measure their contention instead.
  const pg = await safely("postgres", log, () => measurePostgres(options.databaseUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL, ms));
  const rabbitmq = options.rabbitmq ?? true;
  const single = rabbitmq ? await safely("rabbitmq single", log, () => measureAmqp(amqpUrl, queueType, ms, 1)) : undefined;
  const batch64 = rabbitmq ? await safely("rabbitmq batch64", log, () => measureAmqp(amqpUrl, queueType, ms, 64)) : undefined;
  const http = await safely("http", log, () => measureHttp(ms));
  const cpu = await safely("cpu", log, () => measureCpu(options.databaseUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL, ms / 5));
  const kernel = await safely("kernel", log, async () => {
    const speed = kernelSpeedApart(ms / 5);
    if (speed === null) throw new Error("the kernel-speed probe's process failed");
    return speed;
  });
  return {
    quick,
    measuredAt: new Date().toISOString(),
    host: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), platform: `${os.platform()}-${os.arch()}`, bun: Bun.version },
    postgres: pg,
    rabbitmq: { single, batch64 },
    http,
    cpu,
    kernel,
  };
}

/**
 * (d) One core's speed: the worker's signing and the API's JSON handling in a process of their own
 * (core-speed.ts), a memory copy in this one, and a Postgres backend's executor over one connection
 * (no scratch objects: it reads only generate_series). Each runs alone for `durationMs`.
 */
export async function measureCpu(databaseUrl: string, durationMs: number): Promise<CpuCeiling> {
  const speed = coreSpeedApart(durationMs, true);
  if (speed === null) throw new Error("the core-speed probe's process failed");
  const from = Buffer.alloc(64 * 2 ** 20, 7);
  const to = Buffer.alloc(from.length);
  const copiesPerSec = timesPerSecond(durationMs, () => from.copy(to), 1);
  const memoryCopyGiBPerSec = Math.round((copiesPerSec * from.length * 100) / 2 ** 30) / 100;
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connection: { jit: "off" } });
  try {
    const rows = 200_000;
    const query = () => sql`select sum(hashtext(g::text)::bigint) from generate_series(1, ${rows}::int) g`;
    await query();
    let done = 0;
    const start = performance.now();
    while (performance.now() - start < durationMs) {
      await query();
      done += rows;
    }
    const postgresRowsPerSec = Math.round((done * 1000) / (performance.now() - start));
    return { signaturesPerSec: speed.signaturesPerSec, jsonRoundTripsPerSec: speed.jsonRoundTripsPerSec!, memoryCopyGiBPerSec, postgresRowsPerSec };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * (a) Batched inserts, as the API's group commit does them: 500 rows per statement through
 * unnest(text[]) with the payload cast to jsonb in SQL, 2 statements in flight (the
 * INGEST_GROUP_CONCURRENCY default). Then one row per commit with 32 in flight, the best a
 * non-batching design could do. The payload travels as text and is cast in SQL: a string bound to a
 * parameter Postgres types as jsonb would be stored as a JSON string, not an object (checked below).
 */
export async function measurePostgres(databaseUrl: string, durationMs: number): Promise<PostgresCeiling> {
  const adminUrl = new URL(databaseUrl);
  adminUrl.pathname = "/postgres";
  const dbName = `evently_ceiling_${suffix()}`;
  const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${dbName}"`);
  const scratchUrl = new URL(databaseUrl);
  scratchUrl.pathname = `/${dbName}`;
  const sql = postgres(scratchUrl.toString(), { max: 32, onnotice: () => {} });
  try {
    await sql`create table scratch (id text primary key, type text not null, payload jsonb not null, created_at timestamptz not null)`;
    const payloads = Array.from({ length: 1000 }, (_, i) => samplePayload(i));
    let seq = 0;
    const nextId = () => `evt_${(seq++).toString(16).padStart(32, "0")}`;

    const batchSize = 500;
    const batchConcurrency = 2;
    const insertBatch = async () => {
        const ids: string[] = [];
        const data: string[] = [];
        const at: string[] = [];
        const now = new Date().toISOString();
        for (let i = 0; i < batchSize; i++) {
          ids.push(nextId());
          data.push(payloads[seq % payloads.length]!);
          at.push(now);
        }
        await sql`
          insert into scratch (id, type, payload, created_at)
          select id, 'order.paid', payload::jsonb, created_at
          from unnest(${ids}::text[], ${data}::text[], ${at}::timestamptz[]) as t (id, payload, created_at)`;
    };
    await warmUp(batchConcurrency, durationMs, insertBatch);
    const batch = await runClosedLoop({ concurrency: batchConcurrency, durationMs, send: insertBatch });
    if (batch.errors > 0) throw new Error(`batch insert failed: ${Object.keys(batch.errorKinds)[0]}`);

    const singleConcurrency = 32;
    const insertOne = async (i: number) => {
      await sql`insert into scratch (id, type, payload, created_at)
                values (${nextId()}, 'order.paid', ${payloads[i % payloads.length]!}::text::jsonb, now())`;
    };
    await warmUp(singleConcurrency, durationMs, insertOne);
    const single = await runClosedLoop({ concurrency: singleConcurrency, durationMs, send: insertOne });
    if (single.errors > 0) throw new Error(`single insert failed: ${Object.keys(single.errorKinds)[0]}`);

    const [check] = await sql<{ kinds: string[] }[]>`select array_agg(distinct jsonb_typeof(payload)) as kinds from scratch`;
    if (check?.kinds.join() !== "object") throw new Error(`payloads stored as ${check?.kinds.join()}, expected object`);

    return {
      batchSize,
      batchConcurrency,
      batchRowsPerSec: Math.round((batch.ok * batchSize * 1000) / batch.durationMs),
      singleConcurrency,
      singleRowsPerSec: single.okPerSecond,
      payloadBytes: Math.round(payloads.reduce((n, p) => n + Buffer.byteLength(p), 0) / payloads.length),
    };
  } finally {
    await sql.end({ timeout: 5 });
    await admin.unsafe(`drop database if exists "${dbName}" with (force)`).catch(() => {});
    await admin.end({ timeout: 5 });
  }
}

/**
 * (b) Persistent publishes on a confirm channel to one scratch queue, keeping `window` unconfirmed
 * messages in flight — what the dispatcher's ConfirmPublisher does. `jobsPerMessage` sizes the
 * message like a delivery message carrying that many ~450-byte job bodies.
 */
export async function measureAmqp(url: string, queueType: string, durationMs: number, jobsPerMessage: number): Promise<AmqpCeiling> {
  const window = 256;
  const job = { jobId: "job_".padEnd(36, "0"), eventId: "evt_".padEnd(36, "0"), endpointId: "ep_".padEnd(35, "0"), attempt: 0, createdAt: Date.now(), body: samplePayload(1) + "x".repeat(120) };
  const content = Buffer.from(JSON.stringify({ v: 1, jobs: Array.from({ length: jobsPerMessage }, () => job) }));
  const queue = `evently.ceiling.${suffix()}`;
  const connection = await amqp.connect(url, { clientProperties: { connection_name: "evently-ceiling" } });
  try {
    const channel = await connection.createConfirmChannel();
    try {
      await channel.assertQueue(queue, { durable: true, arguments: { "x-queue-type": queueType } });
      const start = performance.now();
      const deadline = start + durationMs;
      let inFlight = 0;
      let confirmed = 0;
      let failed: Error | undefined;
      let waitingForDrain = false;
      let end = start;
      await new Promise<void>((resolve) => {
        const pump = () => {
          while (!waitingForDrain && !failed && inFlight < window && performance.now() < deadline) {
            inFlight++;
            const writable = channel.publish("", queue, content, { persistent: true }, (err: unknown) => {
              inFlight--;
              if (err) failed ??= err instanceof Error ? err : new Error(String(err));
              else confirmed++;
              end = performance.now();
              pump();
            });
            if (!writable) {
              waitingForDrain = true;
              channel.once("drain", () => {
                waitingForDrain = false;
                pump();
              });
            }
          }
          if (inFlight === 0 && (failed || performance.now() >= deadline)) resolve();
        };
        pump();
      });
      if (failed) throw failed;
      return { queueType, window, messageBytes: content.length, messagesPerSec: Math.round((confirmed * 1000) / (end - start)) };
    } finally {
      await channel.deleteQueue(queue).catch(() => {});
      await channel.close().catch(() => {});
    }
  } finally {
    await connection.close().catch(() => {});
  }
}

/**
 * (c) A small JSON POST answered 202 by Bun.serve in a child process, driven by Bun's fetch with 64
 * requests in flight (Bun keeps at most 64 keep-alive connections per origin, so more would only
 * queue inside the client).
 */
export async function measureHttp(durationMs: number): Promise<HttpCeiling> {
  const child = Bun.spawn([process.execPath, new URL("./echo-server.ts", import.meta.url).pathname], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  try {
    const port = await readPort(child.stdout);
    const url = `http://127.0.0.1:${port}/events`;
    const body = JSON.stringify({ type: "order.paid", data: JSON.parse(samplePayload(7)) });
    const concurrency = 64;
    const post = async () => {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      await res.arrayBuffer();
      if (res.status !== 202) throw new Error(`HTTP ${res.status}`);
    };
    await warmUp(concurrency, durationMs, post);
    const result = await runClosedLoop({ concurrency, durationMs, send: post });
    return { concurrency, requestsPerSec: result.okPerSecond, p50Ms: result.latencyMs.p50, p99Ms: result.latencyMs.p99, errors: result.errors };
  } finally {
    child.kill("SIGTERM");
    await child.exited;
  }
}

/** The port a child server prints as `{"port":N}` on its first line of stdout. */
export async function readPort(stream: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stream.getReader();
  const timeout = setTimeout(() => void reader.cancel("echo server did not start"), 10_000);
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("echo server exited before listening");
      text += new TextDecoder().decode(value);
    }
    return (JSON.parse(text.split("\n")[0]!) as { port: number }).port;
  } finally {
    clearTimeout(timeout);
    reader.releaseLock();
  }
}
