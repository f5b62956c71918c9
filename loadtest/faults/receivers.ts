import { createServer, type Server, type Socket } from "node:net";

/**
 * The suite's webhook receivers, on 127.0.0.1 only: one HTTP server whose paths behave as a
 * scenario tells them (healthy by default), and a raw TCP listener that resets every connection
 * once a request's head has arrived. Every request is a receipt: which delivery (webhook-id), of
 * which event, when, and whether it was answered 2xx to a sender still listening.
 */
export interface Receipt {
  path: string;
  webhookId: string;
  eventId: string | null;
  receivedAt: number;
  /** Answered 2xx while the sender still waited: a delivery the receiver acknowledged. */
  answered: boolean;
}

/** How a path answers; `body` is the request's text (already read) and `nth` counts requests to the path. */
export type Behaviour = (req: Request, info: { nth: number; body: string; webhookId: string }) => Response | Promise<Response>;

export interface Receivers {
  url: string;
  /** Base URL of the listener that resets connections. */
  resetUrl: string;
  receipts: Receipt[];
  on(path: string, behaviour: Behaviour): void;
  at(path: string): Receipt[];
  stop(): Promise<void>;
}

const STREAMED = "x-faults-streamed";

export function startReceivers(): Receivers {
  const receipts: Receipt[] = [];
  const behaviours = new Map<string, Behaviour>();
  const counts = new Map<string, number>();
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 60,
    async fetch(request) {
      const path = new URL(request.url).pathname;
      const text = await request.text().catch(() => "");
      let eventId: string | null = null;
      try {
        eventId = (JSON.parse(text) as { id?: string }).id ?? null;
      } catch {
        /* not an event: counted anyway */
      }
      const receipt: Receipt = { path, webhookId: request.headers.get("webhook-id") ?? "", eventId, receivedAt: Date.now(), answered: false };
      receipts.push(receipt);
      const nth = (counts.get(path) ?? 0) + 1;
      counts.set(path, nth);
      const behaviour = behaviours.get(path);
      const response = behaviour ? await behaviour(request, { nth, body: text, webhookId: receipt.webhookId }) : new Response("ok");
      // A streamed body (drip, huge) may never finish: the sender's acknowledgement cannot be seen here.
      receipt.answered = response.status < 300 && !request.signal.aborted && !response.headers.has(STREAMED);
      return response;
    },
  });

  const sockets = new Set<Socket>();
  const reset: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let head = "";
    socket.on("data", (chunk) => {
      head += chunk.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const path = /^[A-Z]+ (\S+)/.exec(head)?.[1] ?? "/";
      const webhookId = /\r\nwebhook-id:\s*(\S+)/i.exec(head)?.[1] ?? "";
      receipts.push({ path, webhookId, eventId: null, receivedAt: Date.now(), answered: false });
      // An RST where the platform can send one, else an abrupt close without an answer.
      const s = socket as Socket & { resetAndDestroy?: () => void };
      if (typeof s.resetAndDestroy === "function") s.resetAndDestroy();
      else socket.destroy();
    });
  });
  reset.listen(0, "127.0.0.1");

  return {
    url: `http://127.0.0.1:${server.port}`,
    get resetUrl() {
      return `http://127.0.0.1:${(reset.address() as { port: number }).port}`;
    },
    receipts,
    on: (path, behaviour) => behaviours.set(path, behaviour),
    at: (path) => receipts.filter((r) => r.path === path),
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => reset.close(() => resolve()));
      await server.stop(true);
    },
  };
}

/** Waits `ms`, or less if the sender hangs up first. */
export function stall(req: Request, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (req.signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    req.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()));
  });
}

/** A 200 whose body trickles out a byte every `everyMs` for `totalMs`. */
export function slowDrip(everyMs: number, totalMs: number): Response {
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent * everyMs >= totalMs) return controller.close();
      await Bun.sleep(everyMs);
      sent++;
      controller.enqueue(new Uint8Array([0x20]));
    },
  });
  return new Response(stream, { headers: { "content-type": "text/plain", [STREAMED]: "1" } });
}

/** A 200 with a body of `bytes` bytes, made as it is read (the receiver never holds it whole). */
export function hugeBody(bytes: number): Response {
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  let left = bytes;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) return controller.close();
      const n = Math.min(left, chunk.length);
      left -= n;
      controller.enqueue(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
  return new Response(stream, { headers: { "content-type": "application/octet-stream", "content-length": String(bytes), [STREAMED]: "1" } });
}
