import type { ErrorClass } from "@evently/core/attempts/sql.ts";
import type { SsrfGuard } from "./ssrf.ts";

export interface SendRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** Bounds the whole attempt: DNS, connect, TLS, headers and the capped body read. */
  timeoutMs: number;
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

/**
 * The request that connects to exactly `address` yet still speaks to `url`'s host: the URL names
 * the IP, so fetch does no DNS of its own; `Host` names the host; for https, `serverName` makes
 * the host both the SNI and the name the certificate is verified against. Bun pools keep-alive
 * connections per IP and port, and for TLS per `tls` options too, so a connection made for one
 * host name is never reused for another. A null address (guard off) changes nothing.
 */
export function pinnedRequest(url: URL, address: string | null): { url: URL; host: string | null; tls: { serverName: string } | undefined } {
  if (address === null || url.hostname.replace(/^\[|\]$/g, "") === address) return { url, host: null, tls: undefined };
  const pinned = new URL(url);
  pinned.hostname = address.includes(":") ? `[${address}]` : address;
  return { url: pinned, host: url.host, tls: url.protocol === "https:" ? { serverName: url.hostname } : undefined };
}

/** `work`, or the deadline's reason if it passes first (a DNS lookup cannot be cancelled, only left). */
function beforeDeadline<T>(work: Promise<T>, deadline: AbortSignal): Promise<T> {
  if (deadline.aborted) return Promise.reject(deadline.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(deadline.reason);
    deadline.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => deadline.removeEventListener("abort", onAbort));
  });
}

/**
 * One HTTP attempt: the SSRF guard names the one address to connect to, then a POST to it, no
 * redirects followed, capped body; one deadline bounds it all.
 */
export async function send(request: SendRequest, guard: SsrfGuard): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return failure("invalid_url", `not a valid URL`, elapsed());
  }
  const deadline = AbortSignal.timeout(request.timeoutMs);
  try {
    const destination = await beforeDeadline(guard.destination(url.hostname), deadline);
    if (!destination.ok) return failure(destination.errorClass, destination.detail, elapsed());
    const pinned = pinnedRequest(url, destination.address);
    const headers = new Headers(request.headers);
    if (pinned.host !== null && !headers.has("host")) headers.set("host", pinned.host);
    const response = await fetch(pinned.url, {
      method: "POST",
      headers,
      body: request.body,
      redirect: "manual",
      signal: deadline,
      tls: pinned.tls,
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
