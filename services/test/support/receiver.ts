/** A local webhook receiver for e2e tests: records every request and answers as told. */
export interface ReceivedRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
  receivedAt: number;
  /** Aborts when the sender gives up (its timeout) and closes the connection. */
  signal: AbortSignal;
}

export type Responder = (req: ReceivedRequest, nth: number) => Response | Promise<Response>;

export interface Receiver {
  url: string;
  received: ReceivedRequest[];
  /** Requests to one path (each endpoint in a test gets its own path). */
  on(path: string): ReceivedRequest[];
  respond(path: string, responder: Responder): void;
  stop(): Promise<void>;
}

export function startReceiver(): Receiver {
  const received: ReceivedRequest[] = [];
  const responders = new Map<string, Responder>();
  const counts = new Map<string, number>();
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      const path = new URL(request.url).pathname;
      const entry: ReceivedRequest = {
        path,
        headers: request.headers.toJSON(),
        body: await request.text(),
        receivedAt: Date.now(),
        signal: request.signal,
      };
      received.push(entry);
      const nth = (counts.get(path) ?? 0) + 1;
      counts.set(path, nth);
      const responder = responders.get(path);
      return responder ? responder(entry, nth) : new Response("ok");
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    received,
    on: (path) => received.filter((r) => r.path === path),
    respond: (path, responder) => responders.set(path, responder),
    stop: async () => {
      await server.stop(true);
    },
  };
}

/** Waits `ms`, or less if the sender hangs up first: a receiver slower than the sender's timeout. */
export function stall(req: ReceivedRequest, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    req.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()));
  });
}
