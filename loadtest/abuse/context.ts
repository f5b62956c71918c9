import type postgres from "postgres";
import type { Config } from "../../services/core/config/index.ts";
import type { ApiOperation } from "../../services/http/operation.ts";
import type { Receivers } from "./receivers.ts";
import type { Suite } from "./probe.ts";

/** An application of the installation under test, with one key of its own. */
export interface TestApp {
  id: string;
  name: string;
  key: string;
  keyId: string;
}

/** What every case group gets: the suite's record and client, the installation and its loopback receivers. */
export interface Context {
  suite: Suite;
  receivers: Receivers;
  adminKey: string;
  /** A and B: B's key and the admin key acting as B are aimed at A's resources. */
  a: TestApp;
  b: TestApp;
  /** The scratch database, for what only it can show (rows changed) or do (a URL changed behind the API's back). */
  sql: postgres.Sql;
  /** The installation's configuration, as its roles parsed it. */
  config: Config;
  /** The API's route table (services/api/app.ts), from which route-wide cases are generated. */
  table: ApiOperation[];
  /** Makes an application with one key, through the admin API. */
  createApp(name: string, keyBody?: Record<string, unknown>): Promise<TestApp>;
  log(msg: string): void;
}

export async function createApp(suite: Suite, adminKey: string, name: string, keyBody: Record<string, unknown> = {}): Promise<TestApp> {
  const app = await suite.send({ method: "POST", path: "/applications", key: adminKey, body: { name } });
  if (app.status !== 201) throw new Error(`POST /applications: ${app.status} ${app.text}`);
  const key = await suite.send({ method: "POST", path: `/applications/${app.json.id}/api-keys`, key: adminKey, body: { name: `${name} key`, ...keyBody } });
  if (key.status !== 201) throw new Error(`POST /applications/${app.json.id}/api-keys: ${key.status} ${key.text}`);
  return { id: app.json.id, name, key: key.json.key, keyId: key.json.id };
}

/** Creates an endpoint of `app`; throws when the API refuses it (for fixtures, which must exist). */
export async function createEndpoint(ctx: Context, key: string, body: Record<string, unknown>): Promise<string> {
  const res = await ctx.suite.send({ method: "POST", path: "/endpoints", key, body });
  if (res.status !== 201) throw new Error(`fixture POST /endpoints ${JSON.stringify(body)}: ${res.status} ${res.text}`);
  return res.json.id;
}
