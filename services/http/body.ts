import { MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from "@evently/core/errors.ts";
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
 * - JSON Postgres cannot store is refused as 422 naming the field, instead of failing the insert.
 */

/** Deeper nesting is refused: Postgres' jsonb parser overflows its stack somewhere past ~10k levels. */
export const MAX_JSON_DEPTH = 128;

const utf8 = new TextDecoder("utf-8", { fatal: true });

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
  optional = false,
): Promise<unknown> {
  const contentType = request.headers.get("content-type");
  const untyped = contentType === null || contentType.trim() === "";
  if (!(optional && untyped)) assertJsonContentType(contentType);
  return parseJson(await readText(request, limitBytes, share), optional, untyped);
}

/** The body's text as a storable JSON value (undefined for an optional body left out). */
function parseJson(text: string, optional: boolean, untyped: boolean): unknown {
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
  assertStorable(text, value);
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
  if (!request.body) return "";
  // With a declared length within the limit, let the runtime read the body in one go (the common
  // case, and much cheaper than the chunk loop); the loop below guards bodies of unknown length.
  if (declared > 0) {
    share.take(declared);
    const bytes = new Uint8Array(await untilCut(request.arrayBuffer()));
    if (bytes.byteLength > limitBytes) throw new PayloadTooLargeError(limitBytes);
    // The server holds a body to its Content-Length; should one still run over, count what arrived.
    if (bytes.byteLength > declared) share.take(bytes.byteLength - declared);
    return decodeUtf8(bytes);
  }
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
// A number JSON.parse reads as ±Infinity (stored, it would become null): a three-digit exponent or
// more than 308 digits in a row. Only then is the value walked for one.
const SUSPECT_NUMBER = /[eE][+]?\d{3}|\d{309}/;

/** Throws a 422 naming the first field Postgres could not store (or JSON could not carry). */
function assertStorable(text: string, value: unknown): void {
  if (exceedsDepth(text, MAX_JSON_DEPTH)) {
    throw new ValidationError([{ field: "body", message: `JSON nests deeper than ${MAX_JSON_DEPTH} levels` }]);
  }
  if (!SUSPECT_ESCAPE.test(text) && !SUSPECT_NUMBER.test(text)) return;
  const problem = findUnstorable(value, []);
  if (problem) throw new ValidationError([problem]);
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

function findUnstorable(value: unknown, path: (string | number)[]): { field: string; message: string } | null {
  if (typeof value === "string") {
    const reason = unstorableReason(value);
    return reason ? { field: fieldName(path, "body"), message: reason } : null;
  }
  if (typeof value === "number" && !Number.isFinite(value)) {
    return { field: fieldName(path, "body"), message: "is a number beyond what JSON can carry as a double (it would be stored as null)" };
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findUnstorable(value[i], [...path, i]);
      if (found) return found;
    }
    return null;
  }
  if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      const keyReason = unstorableReason(key);
      if (keyReason) return { field: fieldName([...path, printableKey(key)], "body"), message: `key ${keyReason}` };
      const found = findUnstorable(item, [...path, key]);
      if (found) return found;
    }
  }
  return null;
}
