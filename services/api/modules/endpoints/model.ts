import { z } from "zod";
import { RetryPolicySchema } from "@evently/core/delivery/retry-policy.ts";
import type { EndpointRow } from "@evently/core/endpoints/sql.ts";
import { REDACTED, redactHeaders, redactUrl } from "@evently/core/redact.ts";
import { eventTypePattern, metadata, pageOf, pageQuery, timestamp } from "../../common/model.ts";

const URL_MAX_LENGTH = 2048;

/** http(s) with a host, nothing else: `ftp:`, `javascript:`, `http:foo` and stray spaces are refused. */
export function isHttpUrl(value: string): boolean {
  if (!/^https?:\/\/[^\s]+$/i.test(value) || !URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
}

const url = z
  .string()
  .max(URL_MAX_LENGTH)
  .refine(isHttpUrl, "must be an http:// or https:// URL with a host")
  .describe(
    `Where deliveries are POSTed. A password in it (\`https://user:pass@host/…\`) is sent as HTTP Basic auth ` +
      `(unless \`headers\` has an \`authorization\`) but read back as \`${REDACTED}\`; on update, a url whose ` +
      `password is \`${REDACTED}\` keeps the stored password (same scheme, host, port and username only).`,
  );

// Headers the delivery itself owns: hop-by-hop headers, framing, the body's type and encoding, the
// user agent, and the Standard Webhooks headers that carry the id, timestamp and signature.
const RESERVED_HEADERS = new Set([
  "host",
  "content-length",
  "content-type",
  "content-encoding",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "upgrade",
  "expect",
  "user-agent",
]);
const RESERVED_PREFIX = "webhook-";
// RFC 9110 token characters; values are printable ASCII and tabs.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
const LINE_BREAK_OR_NUL = /[\r\n\0]/;
const MAX_HEADERS = 50;
const HEADER_VALUE_MAX_LENGTH = 4096;

/** What is wrong with one custom header, or null; `seen` holds the lower-cased names before it. */
function headerProblem(name: string, value: string, seen: Set<string>): string | null {
  const lower = name.toLowerCase();
  // Said apart from the rest: a CR, LF or NUL would let a header smuggle in others.
  if (LINE_BREAK_OR_NUL.test(name) || LINE_BREAK_OR_NUL.test(value)) return "must not contain CR, LF or NUL";
  if (!HEADER_NAME.test(name)) return "is not a valid header name";
  if (RESERVED_HEADERS.has(lower) || lower.startsWith(RESERVED_PREFIX)) return "is set by Evently and cannot be given";
  if (seen.has(lower)) return "is given twice (header names are case-insensitive)";
  if (!HEADER_VALUE.test(value) || value.length > HEADER_VALUE_MAX_LENGTH)
    return `value must be at most ${HEADER_VALUE_MAX_LENGTH} printable ASCII characters`;
  return null;
}

const headers = z
  .record(z.string(), z.string())
  .superRefine((value, ctx) => {
    const names = Object.keys(value);
    if (names.length > MAX_HEADERS) ctx.addIssue({ code: "custom", message: `at most ${MAX_HEADERS} headers` });
    const seen = new Set<string>();
    for (const name of names) {
      const problem = headerProblem(name, value[name]!, seen);
      if (problem) ctx.addIssue({ code: "custom", message: `header ${problem}`, path: [name] });
      seen.add(name.toLowerCase());
    }
  })
  // Stored lower-cased: HTTP names are case-insensitive and the worker merges them without surprises.
  .transform((value) => Object.fromEntries(Object.entries(value).map(([k, v]) => [k.toLowerCase(), v])))
  .describe(
    "Extra headers sent with every delivery: token names, printable ASCII values, no CR, LF or NUL. " +
      "Evently sets `content-type: application/json`, `user-agent: Evently-Webhooks/0.1` and the `webhook-*` " +
      "headers itself; those, `host`, framing and hop-by-hop headers are refused. Values of credential-like " +
      "headers (`authorization`, `cookie`, names with token, secret, api-key, password or signature) are stored " +
      `and sent as given (stored encrypted) but read back as \`${REDACTED}\`; on update, the value \`${REDACTED}\` keeps the ` +
      "header's stored value, so headers read and written back lose nothing, except when the url moves to another " +
      "origin: then stored credential values must be given again (422 naming the header otherwise).",
  );


const description = z.string().max(1000);
const previousSecretExpiresAt = timestamp
  .nullable()
  .describe(
    "While a secret rotation's grace window is open, when the previous secret stops signing deliveries " +
      "(until then each delivery carries a signature by each secret); null otherwise.",
  );
const enabled = z
  .boolean()
  .describe(
    "A disabled endpoint gets no new jobs, and its pending jobs end `cancelled` (reason `endpoint_disabled`) when a worker reaches them; " +
      "recover brings them back. Disabling ends a pause; enabling starts the endpoint active, with a fresh circuit. " +
      "`false` here is POST /endpoints/{id}/disable with the reason `disabled by update`, `true` is POST /endpoints/{id}/enable.",
  );
const paused = z
  .boolean()
  .describe(
    "A paused endpoint's jobs are held without spending attempts, and delivered after resume. `true` here is " +
      "POST /endpoints/{id}/pause with the reason `paused by update` (409 for a disabled endpoint), `false` is POST /endpoints/{id}/resume.",
  );
const retryPolicy = RetryPolicySchema.meta({ id: "RetryPolicy" }).nullable().describe(
  "How failed deliveries are retried: `schedule`, `exponential` (full jitter) or `constant`, each bounded by `maxAttempts` " +
    "and/or `maxAgeSeconds`. Null: the installation's default (RETRY_POLICY, else RETRY_SCHEDULE).",
);
const ordering = z
  .enum(["unordered", "fifo"])
  .describe(
    "`fifo`: a job is sent only after every earlier job of this endpoint is delivered or ended, so the receiver sees events " +
      "in the order they were accepted, at the cost of one delivery at a time. Default `unordered`.",
  );
const ttlSeconds = z
  .number()
  .int()
  .min(1)
  .max(2_592_000)
  .nullable()
  .describe("Jobs not delivered this many seconds after their event was accepted end `expired`, never sent late; an event's own ttlSeconds wins. Null: no TTL.");
const timeoutMs = z
  .number()
  .int()
  .min(100)
  .max(300_000)
  .nullable()
  .describe("Per-attempt timeout; null uses DELIVERY_TIMEOUT_MS.");
const RATE_LIMIT =
  "Most deliveries per second to this endpoint, enforced across all workers together (within about 10%, after a burst of a tenth of a second's worth). Jobs over it wait, without spending an attempt, and go when the limit allows; null means no limit.";
const rateLimitPerSecond = z.number().int().min(1).max(1_000_000).nullable().describe(`${RATE_LIMIT} 1 to 1000000.`);
const eventTypes = z
  .array(eventTypePattern)
  .max(100)
  .describe(
    "Convenience: the endpoint's routes, as event type patterns (at most 100). On create, a route is made for " +
      "each; on update, they replace the endpoint's routes (`[]` removes them all); absent leaves them alone.",
  );

export const EndpointCreate = z
  .strictObject({
    url,
    description: description.default(""),
    headers: headers.default({}),
    timeoutMs: timeoutMs.default(null),
    metadata: metadata.default({}),
    enabled: enabled.default(true),
    rateLimitPerSecond: rateLimitPerSecond.default(null),
    retryPolicy: retryPolicy.default(null),
    ordering: ordering.default("unordered"),
    ttlSeconds: ttlSeconds.default(null),
    eventTypes: eventTypes.optional(),
  })
  .meta({ id: "EndpointCreate" });
export type EndpointCreate = z.output<typeof EndpointCreate>;

/** A partial update: absent fields keep their value; null resets timeoutMs, rateLimitPerSecond, retryPolicy and ttlSeconds. */
export const EndpointUpdate = z
  .strictObject({
    url: url.optional(),
    description: description.optional(),
    headers: headers.optional(),
    timeoutMs: timeoutMs.optional(),
    metadata: metadata.optional(),
    enabled: enabled.optional(),
    paused: paused.optional(),
    rateLimitPerSecond: rateLimitPerSecond.optional(),
    retryPolicy: retryPolicy.optional(),
    ordering: ordering.optional(),
    ttlSeconds: ttlSeconds.optional(),
    eventTypes: eventTypes.optional(),
  })
  .meta({ id: "EndpointUpdate" });
export type EndpointUpdate = z.output<typeof EndpointUpdate>;

export const Endpoint = z
  .object({
    id: z.string(),
    url: z.string().describe(`Where deliveries are POSTed; a password in it reads as \`${REDACTED}\`.`),
    description: z.string(),
    enabled: z.boolean(),
    paused: z.boolean().describe("Jobs are held and delivered after resume; false while disabled (disabling ends a pause)."),
    timeoutMs: z.number().int().nullable(),
    status: z
      .enum(["active", "paused", "disabled"])
      .describe("`paused`: jobs are held and delivered after resume. `disabled`: no new jobs (see `enabled`)."),
    statusReason: z.string().nullable().describe("Why the endpoint is paused or disabled (by whom or what); null when active."),
    statusChangedAt: timestamp.nullable(),
    rateLimitPerSecond: z.number().int().nullable().describe(RATE_LIMIT),
    // Its own id: the request shape has defaults the response shape has filled in.
    retryPolicy: RetryPolicySchema.meta({ id: "RetryPolicyView" }).nullable().describe("The endpoint's retry policy; null: the installation's default."),
    ordering,
    ttlSeconds,
    circuit: z
      .object({
        state: z.enum(["closed", "open", "half_open"]),
        since: timestamp.nullable().describe("When the circuit last changed state; null if it never did."),
        retryAt: timestamp
          .nullable()
          .describe("Open: when the next probe may go. Half-open: when the probe's claim lapses (its worker died) and another may go. Closed: null."),
        consecutiveFailures: z.number().int().describe("Failed attempts since the last delivered one, across all workers."),
        timesOpened: z.number().int().describe("How often the circuit opened from closed (reopening after a failed probe is not counted)."),
        failingSince: timestamp
          .nullable()
          .describe("When the current run of failures began; null when the endpoint is healthy. Auto-disable (ENDPOINT_AUTO_DISABLE_AFTER_MS) measures from here."),
      })
      .describe(
        "The circuit breaker, shared by all workers: `open` after CIRCUIT_FAILURE_THRESHOLD consecutive failures or a CIRCUIT_FAILURE_RATIO " +
          "of failures in a window (deliveries wait without spending attempts), `half_open` while one probe delivery tests the receiver, " +
          "`closed` when it succeeds (the held jobs are then sent at once); a failed probe opens it again for longer.",
      ),
    headers: z
      .record(z.string(), z.string())
      .describe(`Custom headers; credential-like ones (see EndpointCreate) read as \`${REDACTED}\`.`),
    metadata: z.record(z.string(), z.string()),
    eventTypes: z
      .array(z.string())
      .describe("The event type patterns of the endpoint's routes, sorted: what it receives. Empty: nothing."),
    previousSecretExpiresAt: previousSecretExpiresAt,
    lastAttempt: z
      .object({
        at: timestamp,
        responseStatus: z.number().int().nullable().describe("The receiver's HTTP status; null when no response came."),
        errorClass: z.string().nullable().describe("Null: delivered. Otherwise why the attempt failed, as on attempts."),
        errorDetail: z.string().nullable(),
      })
      .nullable()
      .describe(
        "The latest delivery attempt to this endpoint, null before the first: how it is doing at a glance. A delivery " +
          "refused by the SSRF guard shows here as `blocked_address` with its reason (and its job fails at once).",
      ),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: "Endpoint" });
export type Endpoint = z.output<typeof Endpoint>;

export const EndpointWithSecret = Endpoint.extend({
  secret: z.string().describe("Signing secret (`whsec_…`); only this response and GET /endpoints/{id}/secret show it."),
}).meta({ id: "EndpointWithSecret" });

export const Secret = z.object({ secret: z.string() }).meta({ id: "EndpointSecret" });

/** Longest grace window a rotation may give the previous secret: 7 days. */
export const MAX_GRACE_SECONDS = 7 * 24 * 60 * 60;
export const DEFAULT_GRACE_SECONDS = 24 * 60 * 60;

export const SecretRotation = z
  .strictObject({
    graceSeconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_GRACE_SECONDS)
      .default(DEFAULT_GRACE_SECONDS)
      .describe(
        `How long the previous secret keeps signing deliveries alongside the new one, 0 to ${MAX_GRACE_SECONDS} ` +
          `(7 days); default ${DEFAULT_GRACE_SECONDS} (24 hours). 0 switches at once and drops any previous secret.`,
      ),
  })
  .meta({ id: "EndpointSecretRotation" });
export type SecretRotation = z.output<typeof SecretRotation>;

export const RotatedSecret = Secret.extend({ previousSecretExpiresAt }).meta({ id: "EndpointRotatedSecret" });

/** The optional body of pause and disable. */
export const StatusReason = z
  .strictObject({
    reason: z
      .string()
      .trim()
      .min(1)
      .max(500)
      .optional()
      .describe("Why, as the endpoint's `statusReason` will show it; default `paused by operator` or `disabled by operator`."),
  })
  .meta({ id: "EndpointStatusReason" });
export type StatusReason = z.output<typeof StatusReason>;

export const EndpointPage = pageOf(Endpoint).meta({ id: "EndpointPage" });
export const EndpointListQuery = pageQuery("endpoint");
export type EndpointListQuery = z.output<typeof EndpointListQuery>;

/** The read model: credentials in the url and headers are redacted (the stored values are sent). */
export function presentEndpoint(row: EndpointRow): Endpoint {
  return {
    id: row.id,
    url: redactUrl(row.url),
    description: row.description,
    enabled: row.enabled,
    paused: row.paused,
    status: !row.enabled ? "disabled" : row.paused ? "paused" : "active",
    statusReason: row.statusReason,
    statusChangedAt: row.statusChangedAt?.toISOString() ?? null,
    timeoutMs: row.timeoutMs,
    rateLimitPerSecond: row.rateLimitPerSecond,
    retryPolicy: row.retryPolicy,
    ordering: row.ordering,
    ttlSeconds: row.ttlSeconds,
    circuit: {
      ...row.circuit,
      since: row.circuit.since?.toISOString() ?? null,
      retryAt: row.circuit.retryAt?.toISOString() ?? null,
      failingSince: row.circuit.failingSince?.toISOString() ?? null,
    },
    headers: redactHeaders(row.headers),
    metadata: row.metadata,
    eventTypes: row.eventTypes,
    previousSecretExpiresAt: row.previousSecretExpiresAt?.toISOString() ?? null,
    lastAttempt: row.lastAttempt && { ...row.lastAttempt, at: row.lastAttempt.at.toISOString() },
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}
