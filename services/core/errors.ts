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

export class UnavailableError extends AppError {
  constructor(detail: string) {
    super(503, "unavailable", detail);
  }
}
