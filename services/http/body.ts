import { MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from "@evently/core/errors.ts";
import { findToken } from "@evently/core/json/scan.ts";
import type { BodyShare } from "./body-budget.ts";
import { fieldName } from "./validate.ts";

/**
 * Request bodies are read here, never by Elysia's parser, so that:
 * - the size limit is enforced while streaming (413 before a huge body is buffered), per route;
 * - the bytes of all bodies being read at once are held to one budget per process (body-budget.ts):
 *   a body that would pass it is refused with 503 `overloaded`, before reading when its length is
 *   declared, else as soon as its chunks pass it;
 * - only a JSON content type is read (`application/json` or `application/*+json`, any parameters),
 *   else 415 before a byte is read: a web page can make a browser send `text/plain`, form or
 *   multipart bodies to any origin without a CORS preflight, but not `application/json`;
 * - JSON Postgres cannot store is refused as 422 naming the field, instead of failing the insert;
 *   and so are numbers that would not survive being re-serialised, except where the route keeps the
 *   text as written (ApiOperation.rawBody).
 */

/** Deeper nesting is refused: Postgres' jsonb parser overflows its stack somewhere past ~10k levels. */
export const MAX_JSON_DEPTH = 128;

const utf8 = new TextDecoder("utf-8", { fatal: true });

export interface JsonBody {
  /** What JSON.parse made of the body; undefined for an optional body left out. */
  value: unknown;
  /** The body as sent ("" when left out): the source of members a route keeps as written. */
  text: string;
}

export interface JsonBodyOptions {
  /** The body may be left out (see readJsonBody). */
  optional?: boolean;
  /**
   * The route keeps members as written (ApiOperation.rawBody), so a number is held to what Postgres
   * can store rather than to what a double can hold: `1e400` is then kept, not refused.
   */
  keepsText?: boolean;
}

/**
 * Reads a JSON body. An `optional` body may be left out: an empty body, with a JSON content type or
 * none, reads as undefined; a body with content must still be sent as JSON. Without a content type
 * the body is read (within the limit) to tell the two apart; with any other type it is refused unread.
 * The bytes read are taken from `share`, which the caller releases once it is done with the body
 * (mount.ts: when the handler has answered, since the parsed value lives until then).
 */
export async function readJsonBody(
  request: Request,
  limitBytes: number,
  share: BodyShare,
  { optional = false, keepsText = false }: JsonBodyOptions = {},
): Promise<JsonBody> {
  const contentType = request.headers.get("content-type");
  const untyped = contentType === null || contentType.trim() === "";
  if (!(optional && untyped)) assertJsonContentType(contentType);
  const text = await readText(request, limitBytes, share);
  return { value: parseJson(text, optional, untyped, keepsText), text };
}

/** The body's text as a storable JSON value (undefined for an optional body left out). */
function parseJson(text: string, optional: boolean, untyped: boolean, keepsText: boolean): unknown {
  if (text.trim() === "") {
    if (optional) return undefined;
    throw new MalformedBodyError("request body is empty; expected JSON");
  }
  if (untyped) throw new UnsupportedMediaTypeError(true);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new MalformedBodyError();
  }
  assertStorable(text, keepsText);
  return value;
}

/** `application/json` or a `+json` type such as `application/merge-patch+json`; case and parameters aside. */
const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9!#$&^_.+-]+\+)?json$/;

function assertJsonContentType(header: string | null): void {
  if (header === null || header.trim() === "") throw new UnsupportedMediaTypeError(true);
  const mediaType = header.split(";", 1)[0]!.trim().toLowerCase();
  if (!JSON_MEDIA_TYPE.test(mediaType)) throw new UnsupportedMediaTypeError(false);
}

async function readText(request: Request, limitBytes: number, share: BodyShare): Promise<string> {
  const declared = Number(request.headers.get("content-length"));
  if (declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  // With a declared length within the limit, let the runtime read the body in one go (the common
  // case, and much cheaper than the chunk loop); the loop below guards bodies of unknown length.
  // `request.body` is not touched on this path: reading it makes the runtime wrap the body in a
  // stream, which arrayBuffer() then drains chunk by chunk (about 5 µs more per request).
  if (declared > 0) {
    share.take(declared);
    const bytes = new Uint8Array(await untilCut(request.arrayBuffer()));
    if (bytes.byteLength > limitBytes) throw new PayloadTooLargeError(limitBytes);
    // The server holds a body to its Content-Length; should one still run over, count what arrived.
    if (bytes.byteLength > declared) share.take(bytes.byteLength - declared);
    return decodeUtf8(bytes);
  }
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await untilCut(reader.read());
    if (done) break;
    size += value.byteLength;
    try {
      if (size > limitBytes) throw new PayloadTooLargeError(limitBytes);
      share.take(value.byteLength);
    } catch (error) {
      await reader.cancel().catch(() => {});
      throw error;
    }
    chunks.push(value);
  }
  return decodeUtf8(Buffer.concat(chunks, size));
}

/** A body that breaks off mid-read (the client went away) is a 400, not a 500 logged as our failure. */
async function untilCut<T>(read: Promise<T>): Promise<T> {
  try {
    return await read;
  } catch {
    throw new MalformedBodyError("request body was cut off before its end");
  }
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new MalformedBodyError("request body is not valid UTF-8");
  }
}

// JSON escapes Postgres jsonb rejects: \u0000, and UTF-16 surrogates (only well-formed pairs pass).
// Raw NUL or lone surrogates cannot reach a parsed string any other way: JSON forbids raw control
// characters and the UTF-8 decoder is fatal, so checking the text first spares most bodies a walk.
const SUSPECT_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
// A number JSON.parse reads as ±Infinity (re-serialised, it would become null) has a three-digit
// exponent, or 210 digits or more before its point (10^309 needs 309 - 99 with a two-digit one).
// The look-behind starts a run's count at its first digit only: without it, a body of 209-digit
// runs costs the regex time quadratic in the run (170 ms for 1 MB).
const SUSPECT_DOUBLE = /[eE]\+?\d{3}|(?<!\d)\d{210}/;
// A number Postgres' numeric cannot hold (jsonb stores numbers as numeric; see fitsNumeric) has an
// exponent of five digits or more, or more than 6384 (16383 - 9999) digits in a row.
const SUSPECT_NUMERIC = /[eE][+-]?\d{5}|(?<!\d)\d{6385}/;

/**
 * Throws a 422 naming the first field Postgres could not store (or, unless the route keeps the text
 * as written, that JSON.stringify would not give back). The text is walked, not the parsed value:
 * what is stored may be the text, and it also holds the members a duplicate key shadows.
 */
function assertStorable(text: string, keepsText: boolean): void {
  if (exceedsDepth(text, MAX_JSON_DEPTH)) {
    throw new ValidationError([{ field: "body", message: `JSON nests deeper than ${MAX_JSON_DEPTH} levels` }]);
  }
  const numbers = (keepsText ? SUSPECT_NUMERIC : SUSPECT_DOUBLE).test(text);
  if (!numbers && !SUSPECT_ESCAPE.test(text)) return;
  const problem = findToken(text, (kind, token, path) => {
    if (kind === "number") {
      if (!numbers) return undefined;
      if (keepsText ? fitsNumeric(token) : Number.isFinite(Number(token))) return undefined;
      return { field: fieldName(path, "body"), message: keepsText ? NOT_NUMERIC : NOT_DOUBLE };
    }
    const reason = SUSPECT_ESCAPE.test(token) ? unstorableReason(JSON.parse(token) as string) : null;
    if (!reason) return undefined;
    if (kind === "string") return { field: fieldName(path, "body"), message: reason };
    const named = [...path.slice(0, -1), printableKey(path.at(-1) as string)];
    return { field: fieldName(named, "body"), message: `key ${reason}` };
  });
  if (problem) throw new ValidationError([problem]);
}

const NOT_DOUBLE = "is a number beyond what JSON can carry as a double (it would be stored as null)";
const NOT_NUMERIC = "is a number beyond what Postgres can store (at most 131072 digits before the point and 16383 after)";

/**
 * Whether Postgres' numeric holds the JSON number `token`, as jsonb stores it (replays compare
 * payloads as jsonb; the events table's `json` would store any number). Its limits, in decimal
 * digits: the first significant digit at most 131071 places before the point, at most 16383 digits
 * of scale (written fraction digits less the exponent), and an exponent within ±(2^31 - 1) / 2.
 */
export function fitsNumeric(token: string): boolean {
  const [, int = "", fraction = "", exponentText = "0"] = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(token) ?? [];
  const exponent = Number(exponentText);
  if (Math.abs(exponent) >= 1073741823 || fraction.length - exponent > 16383) return false;
  const digits = int + fraction;
  const first = digits.search(/[1-9]/);
  return first < 0 || int.length - 1 - first + exponent <= 131071; // zero has no first digit
}

/** One pass over the text counting brackets outside strings; cheaper than walking the parsed value. */
function exceedsDepth(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > limit) return true;
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return false;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function unstorableReason(s: string): string | null {
  if (s.includes("\u0000")) return "contains \\u0000, which cannot be stored";
  if (LONE_SURROGATE.test(s)) return "contains an unpaired UTF-16 surrogate, which cannot be stored";
  return null;
}

/** A key as it can be shown in a field path: the offending characters escaped as in JSON. */
const printableKey = (key: string) => JSON.stringify(key).slice(1, -1);
