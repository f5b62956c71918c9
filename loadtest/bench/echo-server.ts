import { Elysia } from "elysia";

/**
 * The smallest honest stand-in for the API's hot path, for the HTTP ceiling probe: read a JSON body,
 * parse it, answer 202 with a small JSON document. It runs as its own process so, like the real API,
 * it has a JS thread to itself while the probe's client runs in the benchmark process.
 * With the argument `elysia` the same route is served through one Elysia app (Bun.serve calling
 * app.handle, as the API is served): api-cpu.ts's floor for what the framework costs.
 * Prints `{"port":N}` on stdout once listening; exits on SIGTERM or when stdin closes.
 */
let accepted = 0;
const accept = (type: string) => ({ id: `evt_${(++accepted).toString(16).padStart(32, "0")}`, type, status: "accepted" });

async function bare(req: Request): Promise<Response> {
  if (req.method !== "POST") return new Response("not found", { status: 404 });
  const body = (await req.json()) as { type?: unknown };
  if (typeof body?.type !== "string") return Response.json({ error: "type required" }, { status: 400 });
  return Response.json(accept(body.type), { status: 202 });
}

const elysia = new Elysia().post(
  "/events",
  async ({ request, set }) => {
    const body = (await request.json()) as { type?: unknown };
    if (typeof body?.type !== "string") {
      set.status = 400;
      return { error: "type required" };
    }
    set.status = 202;
    return accept(body.type);
  },
  { parse: "none" },
);

const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  development: false,
  fetch: process.argv[2] === "elysia" ? (request) => elysia.handle(request) : bare,
});
console.log(JSON.stringify({ port: server.port }));

const shutdown = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
// The parent holds our stdin open; if it dies without killing us, we stop too.
(async () => {
  for await (const _ of Bun.stdin.stream()) void _;
  shutdown();
})();
