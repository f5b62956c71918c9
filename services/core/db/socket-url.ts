/**
 * Where a Postgres URL connects. postgres.js takes a host only from the URL's authority, and
 * would send a `host` query parameter to the server as a setting, which refuses it; libpq (psql,
 * and the form cloud providers document for their socket proxies) also names a Unix-socket
 * directory either way: `postgres://user@/db?host=/var/run/postgresql`, or a percent-encoded
 * authority, `postgres://user@%2Fvar%2Frun%2Fpostgresql/db`. Both become postgres.js's `path`
 * (`<dir>/.s.PGSQL.<port>`), with the URL's host set to localhost so nothing resolves it.
 * (It is not a speed-up on one machine: at 1,000 single events/s the stack cost the same over
 * the socket as over loopback TCP, BENCHMARKS.md "What was tried and not kept".)
 */
export interface PostgresTarget {
  url: string;
  /** The socket file, when the URL names a socket directory. */
  path?: string;
}

export function postgresTarget(databaseUrl: string): PostgresTarget {
  // libpq allows an empty host (`postgres://user@/db`), which a WHATWG URL does not.
  const withHost = databaseUrl.replace(/^(postgres(?:ql)?:\/\/(?:[^/?#@]*@)?)(?=[/?#]|$)/, "$1localhost");
  const url = new URL(withHost);
  const fromQuery = url.searchParams.get("host");
  const fromAuthority = decodeURIComponent(url.hostname);
  const dir = fromQuery?.startsWith("/") ? fromQuery : fromAuthority.startsWith("/") ? fromAuthority : null;
  if (!dir) return { url: withHost };
  const port = url.port || url.searchParams.get("port") || "5432";
  url.searchParams.delete("host");
  url.searchParams.delete("port");
  url.hostname = "localhost";
  url.port = "";
  return { url: url.toString(), path: `${dir.replace(/\/+$/, "")}/.s.PGSQL.${port}` };
}
