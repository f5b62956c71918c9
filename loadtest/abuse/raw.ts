import { connect } from "node:net";
import { parseAnswer, type Res } from "./probe.ts";

/**
 * One HTTP/1.1 exchange over a bare TCP connection, for requests fetch will not send: a declared
 * Content-Length the body never reaches, conflicting framing headers, malformed header lines.
 * Reads the first response (status line, headers, body up to the connection's close or `timeoutMs`).
 */
export async function rawExchange(host: string, port: number, request: Uint8Array | string, timeoutMs = 5000): Promise<Res> {
  return new Promise<Res>((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const socket = connect({ host, port });
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parse(Buffer.concat(chunks), error));
    };
    const timer = setTimeout(() => finish(chunks.length ? undefined : `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.on("connect", () => socket.write(request));
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      // One response is all we want: stop once its body is complete (Content-Length) or the
      // connection closes.
      if (complete(Buffer.concat(chunks))) finish();
    });
    socket.on("error", (err) => finish(chunks.length ? undefined : err.message));
    socket.on("close", () => finish(chunks.length ? undefined : "connection closed without an answer"));
  });
}

function complete(bytes: Buffer): boolean {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = bytes.subarray(0, end).toString("latin1");
  const length = /^content-length:\s*(\d+)/im.exec(head);
  if (length) return bytes.length >= end + 4 + Number(length[1]);
  return /^transfer-encoding:\s*chunked/im.test(head) ? bytes.includes("\r\n0\r\n\r\n") : false;
}

function parse(bytes: Buffer, error?: string): Res {
  const text = bytes.toString("latin1");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!status) return { status: 0, fields: [], text, headers: new Headers(), error: error ?? `not an HTTP answer: ${JSON.stringify(text.slice(0, 80))}` };
  const end = text.indexOf("\r\n\r\n");
  const headers = new Headers();
  for (const line of text.slice(0, end < 0 ? undefined : end).split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      try {
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      } catch {
        // A header value Headers will not hold: irrelevant to the verdict.
      }
    }
  }
  let body = end < 0 ? "" : text.slice(end + 4);
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) body = dechunk(body);
  return parseAnswer(Number(status[1]), Buffer.from(body, "latin1").toString("utf8"), headers);
}

function dechunk(body: string): string {
  let out = "";
  let rest = body;
  for (;;) {
    const nl = rest.indexOf("\r\n");
    if (nl < 0) return out;
    const size = parseInt(rest.slice(0, nl), 16);
    if (!(size > 0)) return out;
    out += rest.slice(nl + 2, nl + 2 + size);
    rest = rest.slice(nl + 2 + size + 2);
  }
}
