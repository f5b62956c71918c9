import { z } from "zod";
import { parseCidrList } from "../net/policy.ts";
import { keyProblem } from "../secrets/cipher.ts";
import { RetryPolicySchema } from "../delivery/retry-policy.ts";

/**
 * One zod schema per concern. Every variable carries a description: the README's configuration
 * table is rendered from these schemas (see table.ts) and a test keeps the two in step.
 */
const bool = (fallback: boolean) =>
  z
    .enum(["true", "false", "1", "0"])
    .default(fallback ? "true" : "false")
    .transform((v) => v === "true" || v === "1");

const int = (fallback: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

export const databaseSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional()
    .describe(
      "Postgres connection URL, like `postgres://postgres@127.0.0.1:5432/evently`, or a Unix socket the way libpq names one (`postgres://postgres@/evently?host=/var/run/postgresql`); `migrate` creates the database if it is missing. Unset: `all` and `migrate` start an embedded Postgres (other roles refuse to start).",
    ),
  DATABASE_POOL_MAX: int(10, 1, 200).describe("Connections per process, besides a `LISTEN` connection and those of INGEST_GROUP_CONCURRENCY (api), with RabbitMQ the api's outbox clears (1), and the worker's claims and attempt writes (5) and, on the Postgres transport, its takes (1)."),
  EVENTLY_DATA_DIR: z
    .string()
    .min(1)
    .default(".evently")
    .describe("Embedded Postgres only: where its data, password and log live (relative to the working directory)."),
  EMBEDDED_POSTGRES_PORT: int(5433, 1, 65535).describe(
    "Embedded Postgres only: its port on 127.0.0.1; not 5432, so it does not clash with a Postgres already installed.",
  ),
});

export const queueSchema = z
  .object({
    QUEUE_TRANSPORT: z
      .enum(["rabbitmq", "postgres"])
      .optional()
      .describe(
        "How jobs reach workers: `rabbitmq` (needs AMQP_URL) or `postgres` (the outbox table is the queue). Default: `rabbitmq` when AMQP_URL is set, else `postgres`.",
      ),
    QUEUE_POLL_INTERVAL_MS: int(1000, 50, 60_000).describe(
      "Postgres transport: how often an idle worker looks for due jobs it was not notified of (retries, lapsed leases, a missed notification).",
    ),
    QUEUE_TAKE_BATCH: int(256, 1, 10_000).describe("Postgres transport: most jobs a worker takes from the outbox at once. Either transport: most jobs one commit hands over to a worker (QUEUE_HANDOVER_URL)."),
    QUEUE_LOCAL_HANDOVER: bool(true).describe(
      "Postgres transport, a process that both ingests and delivers (role `all`): a commit claims the new jobs that fit in this process's worker (up to QUEUE_TAKE_BATCH) itself and hands them over in memory, with no NOTIFY and no take; the rest go through the outbox. Off: every job goes through the outbox's take.",
    ),
    QUEUE_HANDOVER_URL: z
      .string()
      .regex(/^https?:\/\/[^/?#]+\/?$/, "must be an http:// or https:// URL with no path, like `http://api:8080`")
      .optional()
      .describe(
        "A worker process: the API process to connect to for the hand-over, like `http://evently-api:8080`. Commits of that API claim the new jobs that fit in this worker's room (up to QUEUE_TAKE_BATCH; on RabbitMQ only a commit's jobs that all fit) and send them over the connection: on the Postgres transport with no NOTIFY and no take, on RabbitMQ with no publish and no claim statement. The rest, and everything while the connection is down, come the usual way (the outbox's take, or the broker). Authenticated with a token both derive from ENCRYPTION_KEY. Unset: no hand-over.",
      ),
    QUEUE_TAKE_LEASE_MS: z.coerce
      .number()
      .int()
      .optional()
      .describe(
        "Deprecated and ignored: a job taken from the outbox was leased for this until its worker claimed it; the take now claims it, under WORKER_LEASE_MS. Accepted so existing deployments still start.",
      ),
    AMQP_URL: z
      .string()
      .regex(/^amqps?:\/\//, "must be an amqp:// or amqps:// URL")
      .optional()
      .describe("RabbitMQ connection URL, like `amqp://guest:guest@127.0.0.1:5672`; setting it selects the RabbitMQ transport."),
    AMQP_PREFIX: z
      .string()
      .regex(/^[a-zA-Z0-9_.-]{1,100}$/, "letters, digits, '.', '_' or '-'")
      .default("evently")
      .describe("Prefix of every exchange and queue name, so several installations can share a vhost."),
    AMQP_QUEUE_TYPE: z
      .enum(["quorum", "classic"])
      .default("quorum")
      .describe("`quorum` (replicated in a cluster) or `classic` queues."),
    AMQP_WORK_QUEUES: int(2, 1, 64).describe(
      "Work queues the jobs are spread over; one queue is one Erlang process, so more queues use more broker cores.",
    ),
    AMQP_PUBLISH_GRACE_MS: int(5000, 0, 600_000).describe(
      "How long a new job waits for the publish right after commit (the fast path) before the dispatcher's sweep takes it.",
    ),
    AMQP_JOBS_PER_MESSAGE: int(64, 1, 1000).describe(
      "Jobs carried by one AMQP message; batching is what lets one queue carry thousands of deliveries a second.",
    ),
  })
  .refine((q) => q.QUEUE_TRANSPORT !== "rabbitmq" || q.AMQP_URL !== undefined, {
    path: ["AMQP_URL"],
    message: "is required when QUEUE_TRANSPORT=rabbitmq",
  })
  .transform(({ QUEUE_TRANSPORT, ...rest }) => ({
    ...rest,
    QUEUE_TRANSPORT: QUEUE_TRANSPORT ?? (rest.AMQP_URL === undefined ? "postgres" : "rabbitmq"),
  }));

/**
 * What handling a request body costs in memory, per byte of the body: the text, the parsed value,
 * its validated copy, the serialised payloads and envelopes, and the statement's parameters. The
 * abuse suite (`npm run abuse`) measures one largest batch at about 10 times its size in RSS; the
 * budget counts that, so MAX_BODY_BYTES_IN_FLIGHT bounds memory, not only bytes being read.
 */
export const BODY_MEMORY_FACTOR = 10;

export const httpSchema = z
  .object({
    HOST: z
      .string()
      .default("127.0.0.1")
      .describe("Address the HTTP server binds: loopback unless set (the Docker image and the chart set `0.0.0.0`)."),
    PORT: int(8080, 0, 65535).describe(
      "HTTP port: the API in `api`/`all`, health and metrics in `worker`/`dispatcher`.",
    ),
    MAX_PAYLOAD_BYTES: int(262_144, 1024, 16_777_216).describe(
      "Largest accepted `POST /events` body, in bytes (413 above it).",
    ),
    MAX_BATCH_EVENTS: int(500, 1, 10_000).describe("Most events in one `POST /events/batch`."),
    MAX_BODY_BYTES_IN_FLIGHT: int(67_108_864, 1_048_576, 4_294_967_296).describe(
      `Memory one API process may spend on request bodies at once, from reading a body until its request is answered, counted as ${BODY_MEMORY_FACTOR} × each body's size (what parsing, validating and storing it costs). A body that would pass it is refused with 503 \`overloaded\` and \`Retry-After: 1\` (before reading when its length is declared). At least ${BODY_MEMORY_FACTOR} × MAX_PAYLOAD_BYTES; it also caps the \`POST /events/batch\` body at 1/${BODY_MEMORY_FACTOR} of it (6.4 MiB by default), so a larger batch gets 413.`,
    ),
    ADMIN_API_KEY: z
      .string()
      .min(32, "must be at least 32 characters")
      .regex(/^\S+$/, "must not contain white space")
      .refine((v) => !v.startsWith("evk_"), "must not start with evk_, which marks application keys")
      .optional()
      .describe(
        "The admin key: manages applications and their keys, and acts on any application named by the `Evently-Application` header. Required by `api`; `all` without it generates one into EVENTLY_DATA_DIR and prints it. Make one with `openssl rand -hex 32`.",
      ),
    API_KEY: z
      .undefined({ error: "was renamed to ADMIN_API_KEY (at least 32 characters); application keys are made with POST /applications/{id}/api-keys" })
      .optional()
      .describe("Removed: renamed to ADMIN_API_KEY. Setting it stops startup with that message."),
    METRICS_AUTH: z
      .enum(["public", "admin"])
      .default("public")
      .describe("`public`: /metrics needs no key (for scrapers on a private network); `admin`: it needs the admin key, on every role's server."),
  })
  // A body larger than the in-flight bound could never be read: it would be refused with a 503
  // that no retry cures. Batches are capped to the bound instead (events/index.ts: 413 above it).
  .refine((h) => h.MAX_BODY_BYTES_IN_FLIGHT >= h.MAX_PAYLOAD_BYTES * BODY_MEMORY_FACTOR, {
    path: ["MAX_BODY_BYTES_IN_FLIGHT"],
    message: `must be at least ${BODY_MEMORY_FACTOR} × MAX_PAYLOAD_BYTES (what handling one largest body costs)`,
  });

export const ingestSchema = z.object({
  INGEST_GROUP_MAX_EVENTS: int(2000, 1, 50_000).describe(
    "Most events committed in one group-commit transaction.",
  ),
  INGEST_GROUP_CONCURRENCY: int(2, 1, 32).describe("Group-commit transactions in flight at once, each on a connection of its own (besides DATABASE_POOL_MAX)."),
  INGEST_OVERLAP_MIN_EVENTS: int(32, 0, 50_000).describe(
    "Fewest events a group-commit transaction needs to start while another is in flight; fewer wait for it to end, so under load commits are fewer and fuller. Idle, an event still commits at once. 0: no least.",
  ),
});

export const dispatchSchema = z.object({
  DISPATCH_INTERVAL_MS: int(500, 10, 60_000).describe(
    "RabbitMQ transport: how often the dispatcher sweeps the outbox for due jobs (missed fast path, retries, lost leases).",
  ),
  DISPATCH_BATCH_SIZE: int(1000, 1, 20_000).describe("Most jobs one sweep publishes."),
  DISPATCH_MAX_RETRIES_PER_SECOND: int(2000, 1, 1_000_000).describe(
    "Most due retries (and replays) released per second, by each dispatcher process (RabbitMQ) or each worker process (Postgres transport), so a backlog of retries after an outage reaches receivers gradually. First deliveries and lapsed leases are not held back by it.",
  ),
  OPERATION_BATCH_SIZE: int(500, 1, 10_000).describe(
    "Bulk replays (event replay, endpoint recovery): jobs one step of an operation replays, in one transaction with its progress.",
  ),
  OPERATION_RATE_PER_SECOND: int(1000, 1, 1_000_000).describe(
    "Bulk replays: most jobs one operation replays per second, however many processes run operations (the dispatcher, and workers with QUEUE_TRANSPORT=postgres). Replayed jobs are then delivered at the endpoint's own rate limit.",
  ),
});

/** `5s,5m,250ms` (already checked by the schema's regex) as milliseconds. */
function durationsMs(spec: string): number[] {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return spec.split(",").map((part) => {
    const [, count, suffix] = /^(\d+)(ms|s|m|h)$/.exec(part)!;
    return Number(count) * unit[suffix!]!;
  });
}

export const deliverySchema = z.object({
  WORKER_PREFETCH: int(64, 1, 10_000).describe("Unacknowledged AMQP messages per work queue consumer."),
  WORKER_MAX_IN_FLIGHT: int(512, 1, 100_000).describe("HTTP deliveries in flight per worker process."),
  WORKER_MAX_IN_FLIGHT_PER_ENDPOINT: int(32, 1, 10_000).describe(
    "HTTP deliveries in flight to one endpoint; the rest wait without holding up other endpoints.",
  ),
  WORKER_LEASE_MS: int(10_000, 3000, 600_000).describe(
    "How long a worker's claim on a job holds without renewal. A live worker renews the claims of every job it is delivering every third of this, in one statement; if it dies, its jobs are offered again once their claims lapse (by the dispatcher, or from the outbox with the Postgres transport), so within about this much time plus DISPATCH_INTERVAL_MS or QUEUE_POLL_INTERVAL_MS. With the Postgres transport the take itself claims the jobs, under this lease.",
  ),
  WORKER_LEASE_MARGIN_MS: z.coerce
    .number()
    .int()
    .optional()
    .describe("Deprecated and ignored: claims were the endpoint's timeout plus this; they are now renewed leases of WORKER_LEASE_MS. Accepted so existing deployments still start."),
  WORKER_CLAIM_TIMEOUT_MS: int(10_000, 100, 600_000).describe(
    "Longest a worker waits for Postgres to confirm its claim on a batch of jobs; after it the jobs are handed back to the queue and delivered later, so a connection cut mid-query cannot stall the worker.",
  ),
  WORKER_SLOT_WAIT_MS: int(1000, 10, 600_000).describe(
    "Longest a job may expect to wait for a free slot at a slow endpoint (one answering in 250 ms or more on average); a job that would wait longer is deferred instead of holding its queue message.",
  ),
  WORKER_DEFER_DELAY_MS: int(2000, 10, 3_600_000).describe(
    "How long a deferred job (its endpoint had no free slot) waits before it is taken again; a deferral is not an attempt and does not use up a retry.",
  ),
  DELIVERY_TIMEOUT_MS: int(15_000, 100, 300_000).describe("Default per-attempt timeout for endpoints that set none."),
  DELIVERY_MAX_RESPONSE_BYTES: int(4096, 0, 1_048_576).describe("Response body bytes kept on each attempt."),
  DELIVERY_ALLOW_PRIVATE_NETWORKS: bool(false).describe(
    "The blunt switch: allow deliveries to every address, loopback, private, link-local and cloud metadata included (SSRF guard off). Prefer DELIVERY_ALLOWED_CIDRS.",
  ),
  DELIVERY_ALLOWED_CIDRS: z
    .string()
    .default("")
    .transform((spec, ctx) => {
      const { cidrs, invalid } = parseCidrList(spec);
      if (invalid.length > 0) ctx.addIssue({ code: "custom", message: `not a CIDR: ${invalid.join(", ")} (write like 10.1.0.0/16,fd00::/8)` });
      return cidrs;
    })
    .describe(
      "Comma-separated CIDRs (IPv4 and IPv6, like `127.0.0.0/8,10.1.0.0/16`) that deliveries may reach though not public; everything else non-public stays refused, both when an endpoint is saved and when the worker connects. A cloud metadata address (169.254.169.254) is opened only by naming it alone (`/32`).",
    ),
  RETRY_SCHEDULE: z
    .string()
    .regex(/^\d+(ms|s|m|h)(,\d+(ms|s|m|h))*$/, "comma-separated durations like 5s,5m,30m,2h")
    .default("5s,5m,30m,2h,5h,10h,10h")
    .transform(durationsMs)
    .describe(
      "Delays before each retry (units `ms`, `s`, `m`, `h`) of the default policy when RETRY_POLICY is unset; a job is dead after the last one. Each delay gets ±RETRY_JITTER.",
    ),
  RETRY_JITTER: z.coerce.number().min(0).max(1).default(0.2).describe("Random fraction added or removed from each retry delay."),
  RETRY_POLICY: z
    .string()
    .optional()
    .transform((spec, ctx) => {
      if (spec === undefined || spec.trim() === "") return null;
      let value: unknown;
      try {
        value = JSON.parse(spec);
      } catch {
        ctx.addIssue({ code: "custom", message: "is not JSON (like {\"type\":\"exponential\",\"baseMs\":1000,\"capMs\":3600000,\"maxAttempts\":10})" });
        return z.NEVER;
      }
      const parsed = RetryPolicySchema.safeParse(value);
      if (!parsed.success) {
        ctx.addIssue({ code: "custom", message: parsed.error.issues.map((i) => `${i.path.join(".") || "policy"}: ${i.message}`).join("; ") });
        return z.NEVER;
      }
      return parsed.data;
    })
    .describe(
      "The default retry policy as JSON (`schedule`, `exponential` or `constant`; see the README's Delivery guarantees). When unset, RETRY_SCHEDULE and RETRY_JITTER make a `schedule` policy. An endpoint's own `retryPolicy` replaces it.",
    ),
  RETRY_AFTER_MIN_MS: int(1000, 0, 3_600_000).describe(
    "Earliest a receiver's `Retry-After` (on 429 or 503) can bring a retry: a shorter one (or `0`) is raised to this.",
  ),
  RETRY_AFTER_MAX_MS: int(86_400_000, 0, 604_800_000).describe(
    "Latest a receiver's `Retry-After` (on 429 or 503) can push a retry; a longer one is cut to this, and 0 ignores `Retry-After`.",
  ),
  RETRY_FINAL_STATUSES: z
    .string()
    .regex(/^$|^4\d\d(,4\d\d)*$/, "comma-separated 4xx statuses like 400,401,403")
    .default("")
    .transform((spec) => new Set(spec === "" ? [] : spec.split(",").map(Number)))
    .describe(
      "4xx statuses that end a job `dead` at once instead of retrying (like `400,401,403,404`). Empty: every failure is retried per policy, as Svix and Convoy do. `410 Gone` always ends the job and disables the endpoint.",
    ),
  RECORD_BATCH_MAX: int(500, 1, 10_000).describe("Most attempts written in one statement."),
  CIRCUIT_FAILURE_THRESHOLD: int(10, 0, 1_000_000).describe(
    "Consecutive failed attempts to one endpoint, across all workers, that open its circuit: its deliveries then wait without spending attempts until a probe succeeds. 0 turns this rule off (with CIRCUIT_FAILURE_RATIO=0 too, the breaker is off).",
  ),
  CIRCUIT_FAILURE_RATIO: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(0.5)
    .describe(
      "Failed share of an endpoint's attempts in one CIRCUIT_WINDOW_MS window (of at least CIRCUIT_MIN_ATTEMPTS attempts) that opens its circuit; 0 turns this rule off.",
    ),
  CIRCUIT_WINDOW_MS: int(60_000, 1000, 86_400_000).describe("Length of the window CIRCUIT_FAILURE_RATIO is measured over; a new one starts with the first attempt after it."),
  CIRCUIT_MIN_ATTEMPTS: int(20, 1, 1_000_000).describe("Fewest attempts in a window for CIRCUIT_FAILURE_RATIO to apply."),
  CIRCUIT_OPEN_MS: int(30_000, 100, 86_400_000).describe(
    "Shortest time an open circuit waits before letting one probe delivery through (half-open): success closes it, failure opens it again. It waits as long as the endpoint has been failing, within CIRCUIT_OPEN_MS..CIRCUIT_OPEN_MAX_MS, so each failed probe about doubles the wait.",
  ),
  CIRCUIT_OPEN_MAX_MS: int(600_000, 100, 86_400_000).describe("Longest time an open circuit waits before its probe (a value below CIRCUIT_OPEN_MS counts as CIRCUIT_OPEN_MS)."),
  ENDPOINT_AUTO_DISABLE_AFTER_MS: int(432_000_000, 0, 31_536_000_000).describe(
    "An endpoint whose attempts have all failed for this long (5 days by default) is disabled at its next failure, with the reason `failing since <time>: auto-disabled`, and an `endpoint.disabled` event is sent to its application. 0: never.",
  ),
});

export const telemetrySchema = z.object({
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info").describe("Least severe log level printed."),
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .string()
    .url()
    .optional()
    .describe("When set, spans are exported over OTLP/HTTP to this endpoint (`/v1/traces` is appended); unset, tracing is off and costs nothing."),
  // The OpenTelemetry spec's variable and values, so a collector setup written for other services
  // applies unchanged; gRPC is not offered (one more transport to carry for no receiver that lacks HTTP).
  OTEL_EXPORTER_OTLP_PROTOCOL: z
    .enum(["http/protobuf", "http/json"])
    .default("http/protobuf")
    .describe("Encoding of exported spans: `http/protobuf` (the OpenTelemetry default) or `http/json`. Applies only with OTEL_EXPORTER_OTLP_ENDPOINT."),
  TRACE_SAMPLE_RATIO: z.coerce
    .number()
    .min(0)
    .max(1)
    .default(1)
    .describe(
      "Share of traces started here that are recorded, 0 to 1 (parent-based: a request whose `traceparent` says sampled or not is followed as it says). Applies only with OTEL_EXPORTER_OTLP_ENDPOINT.",
    ),
  OTEL_SERVICE_NAME: z.string().default("evently").describe("Service name on spans and metrics."),
  // The OpenTelemetry spec's batch span processor variables and defaults. The JS SDK reads them only
  // where it builds its own processor, which it does not here.
  OTEL_BSP_MAX_QUEUE_SIZE: int(2048, 1, 1_000_000).describe(
    "Most finished spans a process holds while they wait for export; spans past it are dropped, and a `telemetry: Dropped … spans` warning is logged. Applies only with OTEL_EXPORTER_OTLP_ENDPOINT.",
  ),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: int(512, 1, 1_000_000).describe("Most spans in one export request (at most OTEL_BSP_MAX_QUEUE_SIZE)."),
  OTEL_BSP_SCHEDULE_DELAY: int(5000, 0, 3_600_000).describe(
    "Longest a finished span waits for export, in ms, when fewer than OTEL_BSP_MAX_EXPORT_BATCH_SIZE are waiting.",
  ),
  METRICS_TOP_ENDPOINTS: int(10, 0, 100).describe(
    "How many of the endpoints failing most (by consecutive failures) /metrics reports one by one, with their id as a label (evently_endpoint_consecutive_failures); a bound on series, not on endpoints. 0: none.",
  ),
});

// Checked here so a bad key stops startup naming its variable; the cipher decodes the same text.
const encryptionKey = (value: string, ctx: z.RefinementCtx) => {
  const problem = keyProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
};

export const secretsSchema = z.object({
  ENCRYPTION_KEY: z
    .string()
    .superRefine(encryptionKey)
    .optional()
    .describe(
      "Key that encrypts endpoint secrets and credentials at rest (AES-256-GCM): base64 or base64url of 32 random bytes, like `openssl rand -base64 32` prints. Stored values name their key by an id derived from it; to rotate, move the old key to ENCRYPTION_PREVIOUS_KEYS, set a new one, then run `reencrypt`. Required by `api`, `worker` and `reencrypt`; `all` without it generates one into EVENTLY_DATA_DIR (keep that file with the database).",
    ),
  ENCRYPTION_PREVIOUS_KEYS: z
    .string()
    .optional()
    .transform((list) => (list ?? "").split(",").map((key) => key.trim()).filter((key) => key !== ""))
    .superRefine((keys, ctx) =>
      keys.forEach((key, i) => {
        const problem = keyProblem(key);
        if (problem) ctx.addIssue({ code: "custom", message: `key ${i + 1} ${problem}` });
      }),
    )
    .describe(
      "Comma-separated older keys, same format as ENCRYPTION_KEY, used only to decrypt values written before a rotation; remove one once `reencrypt` reports nothing left under it.",
    ),
});

/**
 * PROCESS_MEMORY_TARGET_BYTES when unset, by the one role a process runs. Idle, an API or worker
 * process holds about 100 MiB. In the bench's million-event burst the API peaked at 233-266 MiB
 * (520 MiB once on a busy machine) and the worker at 252-279 MiB while draining it, nearly all of it
 * garbage waiting for a collection (core/memory-guard.ts). The worker's is higher: it stays above
 * 192 MiB through a whole drain, and collecting that often cost it drain rate. One process running
 * every role (`all`) gets the worker's: through the bench's phases it peaked at 265-276 MiB without
 * a target and at 226-230 MiB with this one, delivering and ingesting as fast.
 */
export const MEMORY_TARGET_DEFAULTS: Readonly<Record<string, number>> = {
  api: 192 * 1024 * 1024,
  worker: 224 * 1024 * 1024,
  all: 224 * 1024 * 1024,
};
const MIN_MEMORY_TARGET_BYTES = 64 * 1024 * 1024;
export const processSchema = z.object({
  PROCESS_MEMORY_TARGET_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .max(68_719_476_736)
    .refine((v) => v === 0 || v >= MIN_MEMORY_TARGET_BYTES, `must be 0 (none) or at least ${MIN_MEMORY_TARGET_BYTES} (64 MiB)`)
    .optional()
    .describe(
      `Resident memory (RSS) above which a process runs a full garbage collection before taking on more work (the API before reading a request body, the worker before handling a message), so what finished work left behind is collected before it piles up. Forced collections take at most about a tenth of the process's time, less while they do not bring it back under; nothing is ever refused for memory. Unset: 201326592 (192 MiB) in a process running the \`api\` role alone, 234881024 (224 MiB) in one running the \`worker\` role alone or every role (\`all\`), none otherwise; 0: none.`,
    ),
});

/**
 * The memory target of a process (0: none); see PROCESS_MEMORY_TARGET_BYTES. `soleRole` is the role
 * the process runs by itself (`services/main.ts api`), undefined otherwise: in `all`, or with roles
 * started inside another program (tests), the process's memory is not one role's to hold.
 */
export function memoryTarget(config: { PROCESS_MEMORY_TARGET_BYTES?: number }, soleRole: string | undefined): number {
  return config.PROCESS_MEMORY_TARGET_BYTES ?? MEMORY_TARGET_DEFAULTS[soleRole ?? ""] ?? 0;
}

export const configSchemas = {
  database: databaseSchema,
  queue: queueSchema,
  http: httpSchema,
  ingest: ingestSchema,
  dispatch: dispatchSchema,
  delivery: deliverySchema,
  telemetry: telemetrySchema,
  secrets: secretsSchema,
  process: processSchema,
} as const;
