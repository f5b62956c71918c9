import type { ErrorClass } from "@evently/core/attempts/sql.ts";
import { checkHost } from "./ssrf.ts";

export interface SendRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  allowPrivateNetworks: boolean;
  maxResponseBytes: number;
}

/** What happened on the wire, as data: the worker records it and decides retry from it. */
export interface SendResult {
  status: number | null;
  responseBody: string | null;
  retryAfter: string | null;
  durationMs: number;
  errorClass: ErrorClass | null;
  errorDetail: string | null;
}

const TLS_CODES = /^(EPROTO|ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH|TLS)/;

export function classifyError(err: unknown): { errorClass: ErrorClass; detail: string } {
  const e = err as { name?: string; code?: string; message?: string };
  const detail = `${e.code ?? e.name ?? "Error"}: ${e.message ?? String(err)}`.slice(0, 500);
  if (e.name === "TimeoutError" || e.name === "AbortError") return { errorClass: "timeout", detail };
  if (e.code === "ECONNREFUSED" || e.code === "ConnectionRefused") return { errorClass: "connection_refused", detail };
  if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN" || e.code === "DNSException") return { errorClass: "dns", detail };
  if (e.code && TLS_CODES.test(e.code)) return { errorClass: "tls", detail };
  return { errorClass: "network", detail };
}

/** Reads at most `max` bytes of the body, then stops reading (a huge response never fills memory). */
async function readCapped(response: Response, max: number): Promise<string> {
  if (!response.body || max === 0) {
    await response.body?.cancel().catch(() => {});
    return "";
  }
  // Most receivers answer a few bytes with a length: read those whole, skipping the stream reader.
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared <= max) return (await response.text()).replaceAll("\u0000", "");
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < max) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  if (size >= max) await reader.cancel().catch(() => {});
  const bytes = Buffer.concat(chunks).subarray(0, max);
  // Postgres text cannot hold NUL; a receiver's binary junk must not fail the attempt write.
  return bytes.toString("utf8").replaceAll("\u0000", "");
}

/** One HTTP attempt: SSRF check, POST with a deadline, no redirects followed, capped body. */
export async function send(request: SendRequest): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return failure("invalid_url", `not a valid URL`, elapsed());
  }
  if (!request.allowPrivateNetworks) {
    const check = await checkHost(url.hostname);
    if (!check.ok) return failure(check.errorClass, check.detail, elapsed());
  }
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: request.headers,
      body: request.body,
      redirect: "manual",
      signal: AbortSignal.timeout(request.timeoutMs),
    });
    const responseBody = await readCapped(response, request.maxResponseBytes);
    const ok = response.status >= 200 && response.status < 300;
    return {
      status: response.status,
      responseBody,
      retryAfter: response.headers.get("retry-after"),
      durationMs: elapsed(),
      errorClass: ok ? null : "http_status",
      errorDetail: ok ? null : `endpoint answered ${response.status}`,
    };
  } catch (err) {
    const { errorClass, detail } = classifyError(err);
    return failure(errorClass, detail, elapsed());
  }
}

function failure(errorClass: ErrorClass, detail: string, durationMs: number): SendResult {
  return { status: null, responseBody: null, retryAfter: null, durationMs, errorClass, errorDetail: detail };
}
