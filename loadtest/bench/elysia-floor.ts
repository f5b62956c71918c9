import { Elysia } from "elysia";

/**
 * The floor under the API's CPU per request that the framework sets: an Elysia app with one route
 * doing what echo-server.ts does (read a JSON body, answer 202 with a small JSON document), served
 * the way the API is (Bun.serve calling app.handle). api-cpu.ts compares the API against it and
 * against the bare Bun.serve of echo-server.ts. Same protocol as echo-server.ts: prints
 * `{"port":N}` once listening; exits on SIGTERM or when stdin closes.
 */
let accepted = 0;
const app = new Elysia().post("/events", async ({ request, set }) => {
  const body = (await request.json()) as { type?: unknown };
  if (typeof body?.type !== "string") {
    set.status = 400;
    return { error: "type required" };
  }
  accepted++;
  set.status = 202;
  return { id: `evt_${accepted.toString(16).padStart(32, "0")}`, type: body.type, status: "accepted" };
}, { parse: "none" });

const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  development: false,
  fetch: (request) => app.handle(request),
});
console.log(JSON.stringify({ port: server.port }));

const shutdown = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
(async () => {
  for await (const _ of Bun.stdin.stream()) void _;
  shutdown();
})();
