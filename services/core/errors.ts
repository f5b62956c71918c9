/**
 * The few error classes the API renders, each with an HTTP status and a stable `code`.
 * They are rendered in one place (services/http/errors.ts) as `{code, detail}`.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    /** Response headers that go with the error, like `Retry-After`. */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

export interface FieldProblem {
  field: string;
  message: string;
}

export class ValidationError extends AppError {
  constructor(readonly errors: FieldProblem[]) {
    const first = errors[0];
    super(
      422,
      "validation_failed",
      first ? `${first.field}: ${first.message}` : "request is invalid",
      { errors },
    );
  }
}

/** Stripe's rule: one idempotency key names one request; a different request under it is refused. */
export class IdempotencyKeyReusedError extends AppError {
  constructor(field: string, key: string) {
    super(422, "idempotency_key_reused", `${field}: "${key}" was already used for an event with another type or data`, {
      errors: [{ field, message: "was already used for an event with another type or data" }],
    });
  }
}

/** A delivery URL whose host is (or resolves to) a non-public address, refused by the SSRF guard. */
export class BlockedAddressError extends AppError {
  constructor(field: string, message: string) {
    super(422, "blocked_address", `${field}: ${message}`, { errors: [{ field, message }] });
  }
}

export class NotFoundError extends AppError {
  constructor(what: string, id: string) {
    super(404, "not_found", `${what} ${id} does not exist`);
  }
}

export class ConflictError extends AppError {
  constructor(detail: string) {
    super(409, "conflict", detail);
  }
}

export class MalformedBodyError extends AppError {
  constructor(detail = "request body is not valid JSON") {
    super(400, "malformed_json", detail);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number) {
    super(413, "payload_too_large", `request body exceeds ${limitBytes} bytes`);
  }
}

/** A body route was sent something other than JSON (services/http/body.ts says why that matters). */
export class UnsupportedMediaTypeError extends AppError {
  constructor(missing: boolean) {
    super(
      415,
      "unsupported_media_type",
      missing ? "content-type is missing; send application/json" : "content-type must be application/json",
    );
  }
}

/**
 * The process is already reading MAX_BODY_BYTES_IN_FLIGHT bytes of request bodies (services/http/
 * body-budget.ts). 503 rather than 429: 429 tells one client that it sent too much, but the bound is
 * shared by every client of the process, so the refusal says the server is busy, which is 503's
 * meaning; clients and load balancers already retry a 503, possibly on a replica with room.
 */
export class OverloadedError extends AppError {
  constructor(limitBytes: number) {
    super(
      503,
      "overloaded",
      `the server is handling as many request bodies as its limit of ${limitBytes} bytes allows; nothing was written, retry shortly`,
      {},
      { "retry-after": "1" },
    );
  }
}

export class UnavailableError extends AppError {
  constructor(detail: string) {
    super(503, "unavailable", detail);
  }
}

/**
 * No key, or one that is unknown, expired or revoked. Says which, without telling whether an
 * unknown key was ever issued; WWW-Authenticate as RFC 6750 asks.
 */
export class UnauthorizedError extends AppError {
  constructor(detail: string) {
    super(401, "unauthorized", detail, {}, {
      "www-authenticate": `Bearer realm="evently"${detail.startsWith("missing") ? "" : ', error="invalid_token"'}`,
    });
  }
}

/** A valid application key on an admin route. Never used for another application's resources: those are 404. */
export class ForbiddenError extends AppError {
  constructor(detail: string) {
    super(403, "forbidden", detail);
  }
}

/** An application ingested past its rateLimitPerSecond (core/ratelimit); nothing was written. */
export class RateLimitedError extends AppError {
  constructor(limitPerSecond: number, retryAfterSeconds: number) {
    super(
      429,
      "rate_limited",
      `this application may ingest ${limitPerSecond} events per second; nothing was written, retry after ${retryAfterSeconds} s`,
      {},
      { "retry-after": String(retryAfterSeconds) },
    );
  }
}
