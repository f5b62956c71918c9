import { existsSync, readFileSync } from "node:fs";

/**
 * How the abuse suite sends one hostile request and judges the answer. Every case expects a
 * refusal; the verdict says whether it got one:
 * - `refused`: a 4xx (or a 5xx the case names: 503 `overloaded`, 505), or the server closing the
 *   connection on a request it would not read while the process stayed up;
 * - `wrongly_accepted`: a 1xx-3xx answer, or a case-specific check found that something got through
 *   (another application's ids in the answer, its rows changed, a decoy receiver hit);
 * - `5xx`: any other 5xx, or the API process gone.
 * A refusal with another status or code than documented still counts as refused, and is listed as
 * `not as documented` so drift shows without failing the run. Controls are the requests that must
 * succeed (the same call by the owner, a valid key before it is revoked): without them a refusal
 * could be one everybody gets, and prove nothing.
 */
export type Verdict = "refused" | "wrongly_accepted" | "5xx";

export interface CaseResult {
  group: string;
  name: string;
  /** What was sent, in a line. */
  sent: string;
  /** The documented answer. */
  expected: string;
  /** What came back, in a line. */
  got: string;
  verdict: Verdict;
  asDocumented: boolean;
  requestId?: string;
  /** For a 5xx: the API's log line for the request, when it has one. */
  apiLog?: string;
  note?: string;
}

export interface ControlResult {
  group: string;
  name: string;
  ok: boolean;
  detail: string;
}

/** A body as sent: JSON of a value, or a string, bytes or a stream sent verbatim. */
export type Body = unknown;

export interface Req {
  method: string;
  path: string;
  /** The bearer key; null sends no Authorization header. */
  key: string | null;
  headers?: Record<string, string>;
  body?: Body;
  /** Content type; application/json by default when there is a body, null for none. */
  contentType?: string | null;
  /** How to show the body in the results (default: its size and start). */
  bodyNote?: string;
}

export interface Res {
  /** 0 when no answer came (connection closed, timeout): see `error`. */
  status: number;
  code?: string;
  detail?: string;
  /** Fields a 422 names. */
  fields: string[];
  text: string;
  headers: Headers;
  requestId?: string;
  error?: string;
  json?: any;
}

export interface Expect {
  status: number | readonly number[];
  code?: string;
  field?: string;
}

const REQUEST_TIMEOUT_MS = 20_000;
const isStream = (b: unknown): b is ReadableStream => b instanceof ReadableStream;

export function describeBody(body: Body, note?: string): string {
  if (note) return note;
  if (body === undefined) return "no body";
  if (isStream(body)) return "a chunked stream";
  const text = body instanceof Uint8Array ? `${body.byteLength} bytes` : typeof body === "string" ? body : JSON.stringify(body);
  if (body instanceof Uint8Array) return text;
  return text.length > 120 ? `${text.slice(0, 100)}… (${Buffer.byteLength(text)} bytes)` : text;
}

export function describeRes(res: Res): string {
  if (res.status === 0) return `no answer: ${res.error}`;
  const parts = [String(res.status)];
  if (res.code) parts.push(res.code);
  if (res.detail) parts.push(`"${res.detail.length > 140 ? `${res.detail.slice(0, 140)}…` : res.detail}"`);
  return parts.join(" ");
}

export function describeExpect(e: Expect): string {
  return [[e.status].flat().join("|"), e.code, e.field && `field ${e.field}`].filter(Boolean).join(" ");
}

/**
 * The suite's record of cases and controls, and its client for the API under test. `apiPid` is
 * watched: a request answered by nothing while the process is gone is a crash, not a refusal.
 */
export class Suite {
  readonly results: CaseResult[] = [];
  readonly controls: ControlResult[] = [];
  readonly notes: { group: string; text: string }[] = [];

  constructor(
    readonly apiUrl: string,
    readonly apiPid: number,
    /** The API's log file, searched for the request id of a 5xx. */
    readonly apiLogFile: string,
  ) {}

  apiAlive(): boolean {
    return existsSync(`/proc/${this.apiPid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${this.apiPid}/status`, "utf8"));
  }

  async send(req: Req): Promise<Res> {
    const headers = new Headers(req.headers);
    if (req.key !== null && !headers.has("authorization")) headers.set("authorization", `Bearer ${req.key}`);
    let body: BodyInit | undefined;
    if (req.body !== undefined) {
      body =
        typeof req.body === "string" || req.body instanceof Uint8Array || isStream(req.body)
          ? (req.body as BodyInit)
          : JSON.stringify(req.body);
      const type = req.contentType === undefined ? "application/json" : req.contentType;
      if (type !== null && !headers.has("content-type")) headers.set("content-type", type);
    }
    try {
      const response = await fetch(`${this.apiUrl}${req.path}`, {
        method: req.method,
        headers,
        body,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        // Bun sends a stream body chunked, without a Content-Length.
        ...(isStream(body) ? { duplex: "half" } : {}),
      } as RequestInit);
      const text = await response.text();
      return parseAnswer(response.status, text, response.headers);
    } catch (err) {
      return { status: 0, fields: [], text: "", headers: new Headers(), error: (err as Error).message };
    }
  }

  /** Sends a hostile request and records the verdict on its answer; `check` may find a leak in a refusal-looking answer. */
  async refuse(
    group: string,
    name: string,
    req: Req,
    expect: Expect,
    check?: (res: Res) => string | null,
  ): Promise<Res> {
    const res = await this.send(req);
    this.judge(group, name, `${req.method} ${req.path} ${describeKey(req)}${describeBody(req.body, req.bodyNote)}`, res, expect, check?.(res) ?? null);
    return res;
  }

  /**
   * Records the verdict on `res`. `leak` is a case-specific finding that something got through
   * whatever the status (A's ids in B's answer, a decoy hit): it makes the case wrongly accepted.
   */
  judge(group: string, name: string, sent: string, res: Res, expect: Expect, leak: string | null = null): CaseResult {
    const statuses = [expect.status].flat();
    // A 5xx the case names is a refusal (503 only as `overloaded`: the in-flight bound; 505 for an
    // HTTP version nobody speaks); any other is a server error.
    const namedRefusal = statuses.includes(res.status) && (res.status !== 503 || res.code === "overloaded");
    const asDocumented =
      statuses.includes(res.status) && (!expect.code || res.code === expect.code) && (!expect.field || res.fields.includes(expect.field));
    let verdict: Verdict;
    let note: string | undefined;
    if (res.status === 0 && !this.apiAlive()) {
      verdict = "5xx";
      note = "the API process is gone";
    } else if (leak !== null) {
      verdict = "wrongly_accepted";
      note = leak;
    } else if (res.status >= 500 && !namedRefusal) verdict = "5xx";
    else if (res.status !== 0 && res.status < 400) verdict = "wrongly_accepted";
    else {
      verdict = "refused";
      if (res.status === 0) note = "the server closed the connection without an answer (the API is still up)";
    }
    const result: CaseResult = {
      group,
      name,
      sent,
      expected: describeExpect(expect),
      got: describeRes(res),
      verdict,
      asDocumented: asDocumented && leak === null,
      requestId: res.requestId,
      note,
    };
    if (verdict === "5xx" && res.requestId) result.apiLog = this.apiLogLine(res.requestId);
    this.results.push(result);
    return result;
  }

  /** Records a case whose verdict a check made outright (a delivery that must fail, a decoy that must stay quiet). */
  record(result: Omit<CaseResult, "asDocumented"> & { asDocumented?: boolean }): void {
    this.results.push({ asDocumented: result.verdict === "refused", ...result });
  }

  control(group: string, name: string, ok: boolean, detail: string): boolean {
    this.controls.push({ group, name, ok, detail });
    return ok;
  }

  note(group: string, text: string): void {
    this.notes.push({ group, text });
  }

  private apiLogLine(requestId: string): string | undefined {
    try {
      return readFileSync(this.apiLogFile, "utf8")
        .split("\n")
        .find((line) => line.includes(requestId))
        ?.slice(0, 2000);
    } catch {
      return undefined;
    }
  }
}

function describeKey(req: Req): string {
  const auth = req.headers?.authorization;
  const named = req.headers?.["evently-application"];
  const who =
    auth !== undefined
      ? `[authorization: ${auth.length > 60 ? `${auth.slice(0, 50)}…` : auth}] `
      : req.key === null
        ? "[no key] "
        : `[key ${req.key.slice(0, 8)}…] `;
  return `${who}${named !== undefined ? `[evently-application: ${named}] ` : ""}`;
}

export function parseAnswer(status: number, text: string, headers: Headers): Res {
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  const isObject = json !== null && typeof json === "object";
  return {
    status,
    code: isObject && typeof json.code === "string" ? json.code : undefined,
    detail: isObject && typeof json.detail === "string" ? json.detail : undefined,
    fields: isObject && Array.isArray(json.errors) ? json.errors.map((e: { field?: unknown }) => String(e.field)) : [],
    text,
    headers,
    requestId: headers.get("x-request-id") ?? undefined,
    json,
  };
}

/** Polls `check` every `everyMs` until it returns a value or `timeoutMs` passes (then undefined). */
export async function pollUntil<T>(check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 50): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    await Bun.sleep(everyMs);
  }
}
