/**
 * Container health probe for images without curl or wget: `bun deploy/docker/healthcheck.ts [path]`.
 *
 * Exits 0 when `GET http://127.0.0.1:$PORT<path>` answers 2xx within HEALTHCHECK_TIMEOUT_MS,
 * 1 otherwise. The path defaults to /health (process alive); compose passes /ready (Postgres and
 * RabbitMQ reachable) so that dependants start only once a role can do work.
 */
const path = process.argv[2] ?? "/health";
const port = Number(process.env.PORT ?? 8080);
const timeoutMs = Number(process.env.HEALTHCHECK_TIMEOUT_MS ?? 2000);

if (!path.startsWith("/") || !Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`healthcheck: bad arguments (path=${path}, PORT=${process.env.PORT})`);
  process.exit(2);
}

try {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  await res.body?.cancel();
  if (!res.ok) console.error(`healthcheck: ${path} answered ${res.status}`);
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: ${path} unreachable: ${(err as Error).message}`);
  process.exit(1);
}
