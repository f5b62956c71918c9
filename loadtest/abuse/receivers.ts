/**
 * The loopback receivers of the abuse suite. One real receiver on 127.0.0.1 (the one address the
 * API under test may deliver to, DELIVERY_ALLOWED_CIDRS=127.0.0.1/32), and decoys on the same port
 * at other loopback addresses the SSRF cases aim at (127.0.0.2, [::1]). A request to a decoy, or to
 * the real receiver on a path under /ssrf/ (where 0.0.0.0 and its spellings would land), means a
 * hostile URL got through: the suite fails on any such hit. Nothing here listens beyond loopback,
 * and no case names an address that could leave the machine with a route to it.
 */
export interface Hit {
  listener: string;
  method: string;
  path: string;
  at: number;
}

export interface Receivers {
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Decoy listeners that could be bound, like `127.0.0.2:<port>`; the ones that could not, with why. */
  decoys: string[];
  unavailable: string[];
  /** Every request the real receiver got. */
  received: Hit[];
  /** Requests that show a bypass: any to a decoy, any to /ssrf/ on the real receiver. */
  bypassHits(): Hit[];
  stop(): Promise<void>;
}

/** Paths answered specially by the real receiver; anything else gets 204. */
export const REDIRECT_PATH = "/ok/redirect";
export const FAIL_PATH_PREFIX = "/ok/fail";

export async function startReceivers(): Promise<Receivers> {
  for (let tries = 0; ; tries++) {
    try {
      return await tryStart();
    } catch (err) {
      // The port the kernel gave 127.0.0.1 may be taken on another loopback address: pick again.
      if (tries >= 5) throw err;
    }
  }
}

async function tryStart(): Promise<Receivers> {
  const received: Hit[] = [];
  const decoyHits: Hit[] = [];
  let port = 0;
  const real = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const path = new URL(request.url).pathname;
      await request.arrayBuffer().catch(() => {});
      received.push({ listener: `127.0.0.1:${port}`, method: request.method, path, at: Date.now() });
      if (path === REDIRECT_PATH) {
        // A redirect to a decoy: the worker must not follow it (send.ts: redirect "manual").
        return new Response(null, { status: 307, headers: { location: `http://127.0.0.2:${port}/ssrf/redirected` } });
      }
      if (path.startsWith(FAIL_PATH_PREFIX)) return new Response("no", { status: 410 });
      return new Response(null, { status: 204 });
    },
  });
  port = real.port!;
  const servers = [real];
  const decoys: string[] = [];
  const unavailable: string[] = [];
  for (const hostname of ["127.0.0.2", "::1"]) {
    const label = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
    try {
      const decoy = Bun.serve({
        hostname,
        port,
        async fetch(request) {
          await request.arrayBuffer().catch(() => {});
          decoyHits.push({ listener: label, method: request.method, path: new URL(request.url).pathname, at: Date.now() });
          return new Response(null, { status: 204 });
        },
      });
      servers.push(decoy);
      decoys.push(label);
    } catch (err) {
      const message = (err as Error).message;
      if (hostname === "127.0.0.2" || /in use/i.test(message)) {
        for (const s of servers) await s.stop(true);
        throw err;
      }
      // No IPv6 loopback in this container: said in the output, the IPv4 decoy still stands.
      unavailable.push(`${label}: ${message}`);
    }
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    decoys,
    unavailable,
    received,
    bypassHits: () => [...decoyHits, ...received.filter((h) => h.path.startsWith("/ssrf/"))],
    stop: async () => {
      for (const s of servers) await s.stop(true);
    },
  };
}
