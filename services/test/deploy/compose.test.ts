/**
 * docker-compose.yml (including its server versions against the ones the tests run on), the
 * Dockerfile, .dockerignore and the container health probe.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import amqp from "amqplib";
import postgres from "postgres";
import { TEST_AMQP_URL } from "../support/stack.ts";
import { ADMIN_URL } from "../support/database.ts";
import { CONFIG_ENV, osTool, readText, repo, ROOT, run, runAsync, tempDir } from "./support.ts";

type Obj = Record<string, any>;
const composeText = await readText("docker-compose.yml");
const compose = Bun.YAML.parse(composeText) as { services: Record<string, Obj>; volumes?: Record<string, unknown> };
const services = compose.services;
const ROLES = ["api", "worker", "dispatcher"];
const dockerfile = await readText("Dockerfile");
const GENERATOR = repo("deploy/docker/generate-env.sh");
/** The variables compose requires (no default) and deploy/docker/generate-env.sh writes. */
const SECRET_VARS = ["ADMIN_API_KEY", "ENCRYPTION_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "GRAFANA_ADMIN_PASSWORD"];
/** `${VAR:?message}`: compose stops with the message when VAR is unset or empty. */
const REQUIRED = /^\$\{([A-Z_]+):\?([^}]+)\}$/;
/** Environment keys that hold a password, a key or a secret. */
const SECRET_KEY = /PASS|SECRET|(^|_)KEYS?$/;
const HEX = /^[0-9a-f]+$/;

/** Parses an .env file into its assignments. */
const parseEnv = (text: string) =>
  Object.fromEntries(
    text
      .split("\n")
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );

/** Writes an .env file with the given assignments into a fresh directory; returns its path. */
function envFile(vars: Record<string, string>): string {
  const file = `${tempDir("compose-env")}/.env`;
  writeFileSync(file, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(""));
  return file;
}

/** The shell without any of the secret variables, so only the env file under test supplies them. */
const withoutSecrets = Object.fromEntries([...SECRET_VARS, "ENCRYPTION_PREVIOUS_KEYS", "METRICS_AUTH"].map((v) => [v, undefined]));
const dockerignore = await readText(".dockerignore");

/** Dockerfile instructions (continuation lines joined), grouped by stage. */
function stages(text: string): { name: string; from: string; instructions: { op: string; args: string }[] }[] {
  const joined = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim());
  const out: { name: string; from: string; instructions: { op: string; args: string }[] }[] = [];
  for (const line of joined) {
    if (!line || line.startsWith("#")) continue;
    const [op = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (op.toUpperCase() === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(args);
      out.push({ from: m?.[1] ?? "", name: m?.[2] ?? String(out.length), instructions: [] });
    } else out.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
  }
  return out;
}

describe("docker-compose.yml", () => {
  test("runs every role from the one image, with the role as the command", () => {
    for (const role of [...ROLES, "migrate"]) {
      const svc = services[role];
      expect(svc, role).toBeDefined();
      expect(svc!.command).toEqual([role]);
      expect(svc!.build).toEqual({ context: ".", target: "runtime" });
      expect(svc!.image).toBe(services.api!.image);
    }
  });

  test("every role waits for a successful migrate; migrate waits for healthy Postgres", () => {
    for (const role of ROLES) expect(services[role]!.depends_on.migrate).toEqual({ condition: "service_completed_successfully" });
    expect(services.migrate!.depends_on.postgres).toEqual({ condition: "service_healthy" });
    expect(services.migrate!.restart).toBe("no");
  });

  test("every long-running service has a healthcheck; roles probe /ready", () => {
    const imageHealthcheck = (target: string | undefined) =>
      stages(dockerfile).find((s) => s.name === target)?.instructions.some((i) => i.op === "HEALTHCHECK") ?? false;
    for (const [name, svc] of Object.entries(services)) {
      if (name === "migrate" || name === "k6") continue; // one-shots
      expect(svc.healthcheck !== undefined || imageHealthcheck(svc.build?.target), `${name} healthcheck`).toBe(true);
    }
    for (const role of ROLES) expect(services[role]!.healthcheck.test).toEqual(["CMD", "bun", "deploy/docker/healthcheck.ts", "/ready"]);
  });

  test("infrastructure versions: Postgres 15, RabbitMQ 3.10 or newer with management", () => {
    expect(services.postgres!.image).toMatch(/^postgres:\$\{POSTGRES_VERSION:-15\}$|^postgres:15/);
    const rabbit = /rabbitmq:\$\{RABBITMQ_VERSION:-([\d.]+)-management\}/.exec(services.rabbitmq!.image);
    expect(rabbit).not.toBeNull();
    const [major = 0, minor = 0] = rabbit![1]!.split(".").map(Number);
    expect(major > 3 || (major === 3 && minor >= 10)).toBe(true);
  });

  test("environment only sets settings Evently knows, and secrets come from the shell or .env", () => {
    for (const role of [...ROLES, "migrate"]) {
      const env = services[role]!.environment as Record<string, string | null>;
      for (const key of Object.keys(env)) expect(CONFIG_ENV.has(key), `${role}: ${key}`).toBe(true);
      expect(Object.keys(env), `${role}: API_KEY was renamed ADMIN_API_KEY`).not.toContain("API_KEY");
      // Required, no default: compose stops and says how to set them.
      for (const key of ["ADMIN_API_KEY", "ENCRYPTION_KEY"]) expect(env[key], `${role}: ${key}`).toMatch(REQUIRED);
      // Optional (rotation only); an empty value is not a list of keys, so it is passed through or left unset.
      expect(env.ENCRYPTION_PREVIOUS_KEYS).toBeNull();
      // Prometheus scrapes /metrics without a key unless METRICS_AUTH=admin is chosen.
      expect(env.METRICS_AUTH).toBe("${METRICS_AUTH:-public}");
      // Passwords inside URLs are required variables, never written here and never defaulted.
      for (const key of ["DATABASE_URL", "AMQP_URL"]) expect(env[key]).toMatch(/^\w+:\/\/\w+:\$\{[A-Z_]+:\?[^}]+\}@/);
    }
  });

  test("no password or key has a default: each is a required variable whose message names the generator", () => {
    const required = new Set<string>();
    for (const [name, svc] of Object.entries(services)) {
      const env = (svc.environment ?? {}) as Record<string, string | null>;
      for (const [key, value] of Object.entries(env)) {
        // Credentials inside a URL (user:password@host).
        const inUrl = /^\w+:\/\/[^:/@]+:([^@]+)@/.exec(value ?? "")?.[1];
        if (inUrl !== undefined) expect(inUrl, `${name}: ${key}`).toMatch(REQUIRED);
        if (!SECRET_KEY.test(key) || value === null) continue; // null: passed through from the shell, optional
        const m = REQUIRED.exec(value);
        expect(m, `${name}: ${key} = ${value}`).not.toBeNull();
        expect(m![2], `${name}: ${key}`).toContain(`${m![1]} is not set; run deploy/docker/generate-env.sh`);
        required.add(m![1]!);
      }
      for (const m of JSON.stringify(env).matchAll(/\$\{([A-Z_]+):\?/g)) required.add(m[1]!);
    }
    expect([...required].sort()).toEqual([...SECRET_VARS].sort());
    // No `${SOME_PASSWORD:-default}` anywhere, comments included.
    expect(composeText).not.toMatch(/\$\{\w*(PASS|SECRET|KEY)\w*:?-/);
  });

  test("the k6 service gets the admin key and every setting it is given is one lib/config.ts reads", async () => {
    const config = await readText("loadtest/k6/lib/config.ts");
    const env = services.k6!.environment as Record<string, string | null>;
    expect(env.ADMIN_API_KEY).toMatch(REQUIRED);
    for (const key of Object.keys(env).filter((k) => k !== "PROFILE")) expect(config, key).toContain(`"${key}"`);
    expect(await readText("loadtest/k6/lib/evently.ts")).toContain('"evently-application"');
  });

  test(".env, where the generator writes the secrets, is ignored by git and not sent to docker build", () => {
    expect(run(["git", "check-ignore", "-q", ".env"]).code).toBe(0);
    expect(dockerignore.split("\n").map((l) => l.trim())).not.toContain("!.env");
  });

  test("observability and load test services are behind profiles, and their files exist", () => {
    for (const name of ["prometheus", "grafana"]) expect(services[name]!.profiles).toEqual(["observability"]);
    for (const name of ["k6", "sink"]) expect(services[name]!.profiles).toEqual(["loadtest"]);
    expect(services.jaeger!.profiles).toEqual(["tracing"]);
    expect(services.sink!.build.target).toBe("sink");
    const mounts = Object.values(services).flatMap((s) => (s.volumes ?? []) as string[]);
    for (const mount of mounts.filter((m) => m.startsWith("./"))) expect(existsSync(repo(mount.split(":")[0]!)), mount).toBe(true);
    for (const script of ["publish.ts", "latency.ts", "soak.ts"]) expect(existsSync(repo("loadtest/k6", script)), script).toBe(true);
    expect(services.k6!.command).toEqual(["run", "/scripts/${K6_SCRIPT:-publish.ts}"]);
    expect(existsSync(repo("loadtest/sink/main.ts"))).toBe(true);
  });

  test("named volumes are declared", () => {
    const named = Object.values(services)
      .flatMap((s) => (s.volumes ?? []) as string[])
      .map((m) => m.split(":")[0]!)
      .filter((src) => !src.startsWith("."));
    for (const v of named) expect(Object.keys(compose.volumes ?? {})).toContain(v);
  });

  const dc = osTool("docker-compose");
  const composeConfig = (args: string[], env: Record<string, string>) =>
    run([dc.path!, "--env-file", envFile(env), "-f", "docker-compose.yml", ...args], { env: withoutSecrets });
  const secrets = (overrides: Record<string, string> = {}) => ({
    ADMIN_API_KEY: "admin-key-from-env-0123456789abcdef",
    ENCRYPTION_KEY: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    POSTGRES_PASSWORD: "pg-from-env",
    RABBITMQ_PASSWORD: "mq-from-env",
    GRAFANA_ADMIN_PASSWORD: "grafana-from-env",
    ...overrides,
  });

  dc.test("docker-compose config accepts the file and resolves the variables", () => {
    const quiet = composeConfig(["config", "-q"], secrets());
    expect(quiet.stderr).toBe("");
    expect(quiet.code).toBe(0);
    const resolved = composeConfig(["--profile", "observability", "--profile", "loadtest", "--profile", "tracing", "config"], secrets());
    expect(resolved.code).toBe(0);
    const cfg = Bun.YAML.parse(resolved.stdout) as { services: Record<string, Obj> };
    expect(Object.keys(cfg.services).sort()).toEqual(Object.keys(services).sort());
    expect(cfg.services.worker!.environment.DATABASE_URL).toBe("postgres://evently:pg-from-env@postgres:5432/evently");
    expect(cfg.services.worker!.environment.AMQP_URL).toBe("amqp://evently:mq-from-env@rabbitmq:5672");
    expect(cfg.services.postgres!.environment.POSTGRES_PASSWORD).toBe("pg-from-env");
    expect(cfg.services.rabbitmq!.environment.RABBITMQ_DEFAULT_PASS).toBe("mq-from-env");
    expect(cfg.services.api!.environment.ADMIN_API_KEY).toBe("admin-key-from-env-0123456789abcdef");
    expect(cfg.services.k6!.environment.ADMIN_API_KEY).toBe("admin-key-from-env-0123456789abcdef");
    expect(cfg.services.api!.environment.METRICS_AUTH).toBe("public");
  });

  dc.test.each(SECRET_VARS)("docker-compose config stops when %s is unset or empty, saying how to set it", (name) => {
    for (const env of [secrets({ [name]: "" }), Object.fromEntries(Object.entries(secrets()).filter(([k]) => k !== name))]) {
      const r = composeConfig(["config", "-q"], env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`${name} is not set; run deploy/docker/generate-env.sh to write .env`);
    }
  });

  dc.test("no rendered service has a password or key other than the ones given", () => {
    const given = secrets();
    const r = composeConfig(["--profile", "observability", "--profile", "loadtest", "config"], given);
    expect(r.code).toBe(0);
    const cfg = Bun.YAML.parse(r.stdout) as { services: Record<string, Obj> };
    const allowed = new Set(Object.values(given));
    for (const [name, svc] of Object.entries(cfg.services))
      for (const [key, value] of Object.entries((svc.environment ?? {}) as Record<string, string | null>)) {
        const inUrl = /^\w+:\/\/[^:/@]+:([^@]+)@/.exec(value ?? "")?.[1];
        if (inUrl !== undefined) expect(allowed.has(inUrl), `${name}: ${key}`).toBe(true);
        if (SECRET_KEY.test(key) && value !== null) expect(allowed.has(value), `${name}: ${key} = ${value}`).toBe(true);
      }
  });

  dc.test("the generator's .env is all docker-compose config needs", () => {
    const file = `${tempDir("compose-gen")}/.env`;
    expect(run([GENERATOR, file]).code).toBe(0);
    const r = run([dc.path!, "--env-file", file, "-f", "docker-compose.yml", "--profile", "observability", "config", "-q"], { env: withoutSecrets });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});

describe("deploy/docker/generate-env.sh", () => {
  test("writes every required secret, freshly generated, into a file only its owner reads", () => {
    const file = `${tempDir("gen")}/.env`;
    const r = run([GENERATOR, file]);
    expect(r.code).toBe(0);
    const env = parseEnv(readFileSync(file, "utf8"));
    expect(Object.keys(env).sort()).toEqual([...SECRET_VARS].sort());
    expect(statSync(file).mode & 0o077).toBe(0);
    expect(env.ADMIN_API_KEY).toMatch(HEX);
    expect(env.ADMIN_API_KEY!.length).toBeGreaterThanOrEqual(32);
    expect(Buffer.from(env.ENCRYPTION_KEY!, "base64").length).toBe(32);
    expect(env.ENCRYPTION_KEY).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    // Hex: used inside DATABASE_URL and AMQP_URL, so nothing may need escaping.
    for (const key of ["POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "GRAFANA_ADMIN_PASSWORD"]) {
      expect(env[key], key).toMatch(HEX);
      expect(env[key]!.length, key).toBeGreaterThanOrEqual(24);
    }
    expect(run([GENERATOR, `${file}.2`]).code).toBe(0);
    const again = parseEnv(readFileSync(`${file}.2`, "utf8"));
    for (const key of SECRET_VARS) expect(again[key], key).not.toBe(env[key]);
  });

  test("never changes a value already set: a second run is a no-op, a partial file is completed", () => {
    const file = `${tempDir("gen")}/.env`;
    run([GENERATOR, file]);
    const first = readFileSync(file, "utf8");
    expect(run([GENERATOR, file]).code).toBe(0);
    expect(readFileSync(file, "utf8")).toBe(first);

    const partial = `${tempDir("gen")}/.env`;
    writeFileSync(partial, "# mine\nPOSTGRES_PASSWORD=kept\nEVENTLY_PORT=9000"); // no final newline
    expect(run([GENERATOR, partial]).code).toBe(0);
    const env = parseEnv(readFileSync(partial, "utf8"));
    expect(env.POSTGRES_PASSWORD).toBe("kept");
    expect(env.EVENTLY_PORT).toBe("9000");
    expect(Object.keys(env).sort()).toEqual([...SECRET_VARS, "EVENTLY_PORT"].sort());
  });

  test("refuses a file that sets a secret to nothing, naming it", () => {
    const file = `${tempDir("gen")}/.env`;
    writeFileSync(file, "ENCRYPTION_KEY=\n");
    const r = run([GENERATOR, file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("ENCRYPTION_KEY");
    expect(readFileSync(file, "utf8")).toBe("ENCRYPTION_KEY=\n");
  });
});

/** The default tag of a compose image written `name:${VERSION_VAR:-tag}`. */
function defaultTag(image: string): string {
  const tag = /:\$\{[A-Z_]+:-([^}]+)\}$/.exec(image)?.[1];
  if (!tag) throw new Error(`${image}: expected name:\${VERSION_VAR:-tag}`);
  return tag;
}
/** "3.10-management" → "3.10", "v2.42.0" → "2.42", "15" → "15"; parts = how many numbers to keep. */
const release = (version: string, parts: number) => /\d+(?:\.\d+)*/.exec(version)?.[0].split(".").slice(0, parts).join(".");

// Compose's defaults are what the tests ran against: a bump of either side must bump the other.
describe("docker-compose.yml runs the server versions the tests run against", () => {
  test("Postgres: the major version of the server the tests use", async () => {
    const sql = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
    const local = (await sql<{ server_version: string }[]>`show server_version`)[0]!.server_version;
    await sql.end();
    const tag = defaultTag(services.postgres!.image);
    expect(release(tag, 1), `compose postgres:${tag}, tests ran on Postgres ${local}`).toBe(release(local, 1)!);
  });

  test("RabbitMQ: the major.minor of the broker the tests use", async () => {
    const connection = await amqp.connect(TEST_AMQP_URL);
    const local = connection.connection.serverProperties.version;
    await connection.close();
    const tag = defaultTag(services.rabbitmq!.image);
    expect(release(tag, 2), `compose rabbitmq:${tag}, tests ran on RabbitMQ ${local}`).toBe(release(local, 2)!);
  });

  const promtool = osTool("promtool");
  promtool.test("Prometheus: the major.minor of the promtool that checks deploy/prometheus", () => {
    const local = run([promtool.path!, "--version"]);
    expect(local.code).toBe(0);
    const version = /version (\S+)/.exec(local.stdout + local.stderr)?.[1] ?? "";
    const tag = defaultTag(services.prometheus!.image);
    expect(release(tag, 2), `compose prom/prometheus:${tag}, promtool ${version}`).toBe(release(version, 2)!);
  });
});

describe("Dockerfile", () => {
  const all = stages(dockerfile);
  const runtime = all.at(-1)!;
  const ops = (op: string) => runtime.instructions.filter((i) => i.op === op);

  test("is multi-stage and ends with the runtime stage compose builds", () => {
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(runtime.name).toBe("runtime");
    for (const target of new Set(Object.values(services).map((s) => s.build?.target).filter(Boolean)))
      expect(all.map((s) => s.name)).toContain(target);
  });

  test("runs as a non-root user with a /health HEALTHCHECK and `bun services/main.ts <role>`", () => {
    const user = ops("USER").at(-1)?.args ?? "root";
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(ops("HEALTHCHECK").at(-1)?.args).toContain('"/health"');
    const entrypoint = JSON.parse(ops("ENTRYPOINT").at(-1)!.args) as string[];
    expect(entrypoint.slice(-2)).toEqual(["bun", "services/main.ts"]);
    expect(JSON.parse(ops("CMD").at(-1)!.args)).toEqual(["all"]);
  });

  test("installs the locked production dependencies and the locked Bun, and runs no Node", () => {
    const runs = (stage: string) =>
      all.find((s) => s.name === stage)?.instructions.filter((i) => i.op === "RUN").map((i) => i.args).join(" ");
    expect(runs("deps")).toContain("npm ci --omit=dev");
    expect(runs("bun")).toContain("require('./package-lock.json').packages['node_modules/bun'].version");
    const lock = JSON.parse(readFileSync(repo("package-lock.json"), "utf8")) as { packages: Record<string, { version?: string }> };
    expect(lock.packages["node_modules/bun"]?.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(runtime.from).toBe("base");
    expect(all.find((s) => s.name === "base")!.from).toMatch(/^debian:/);
  });

  test("each entry point's imports are in its image and use production dependencies only", () => {
    const pkg = JSON.parse(readFileSync(repo("package.json"), "utf8")) as { dependencies: Record<string, string>; workspaces: string[] };
    // Workspace packages (e.g. @evently/core) resolve through node_modules symlinks to their folders.
    const workspaces = new Map<string, string>();
    for (const pattern of pkg.workspaces)
      for (const manifest of new Bun.Glob(`${pattern}/package.json`).scanSync({ cwd: ROOT }))
        workspaces.set((JSON.parse(readFileSync(repo(manifest), "utf8")) as { name: string }).name, path.dirname(manifest));
    const transpiler = new Bun.Transpiler({ loader: "ts" });
    const byName = new Map(all.map((s) => [s.name, s]));
    for (const stage of all.filter((s) => s.instructions.some((i) => i.op === "ENTRYPOINT"))) {
      // Paths copied from the build context into this stage and the stages it builds on.
      const copied: string[] = [];
      for (let s: typeof stage | undefined = stage; s; s = byName.get(s.from))
        for (const i of s.instructions.filter((i) => i.op === "COPY" && !i.args.includes("--from")))
          copied.push(...i.args.split(/\s+/).filter((a) => !a.startsWith("--")).slice(0, -1).map((a) => a.replace(/\/$/, "")));
      const entry = (JSON.parse(stage.instructions.find((i) => i.op === "ENTRYPOINT")!.args) as string[]).find((a) => a.endsWith(".ts"))!;
      const seen = new Set<string>();
      const missing: string[] = [];
      const visit = (file: string) => {
        if (seen.has(file)) return;
        seen.add(file);
        if (!copied.some((c) => file === c || file.startsWith(`${c}/`))) missing.push(`${stage.name}: ${file} is not copied`);
        if (!/\.[cm]?[jt]s$/.test(file)) return; // e.g. an imported package.json
        for (const imp of transpiler.scanImports(readFileSync(repo(file), "utf8"))) {
          if (imp.path.startsWith(".")) visit(path.normalize(path.join(path.dirname(file), imp.path)));
          else if (!/^(node|bun):/.test(imp.path) && !["bun", "bun:test"].includes(imp.path)) {
            const name = imp.path.startsWith("@") ? imp.path.split("/").slice(0, 2).join("/") : imp.path.split("/")[0]!;
            const workspace = workspaces.get(name);
            if (workspace && imp.path !== name) visit(path.join(workspace, imp.path.slice(name.length + 1)));
            else if (!(name in pkg.dependencies)) missing.push(`${stage.name}: ${file} imports ${name}, not a production dependency`);
          }
        }
      };
      visit(entry);
      expect(seen.size, stage.name).toBeGreaterThan(1);
      expect(missing).toEqual([]);
    }
  });

  test("every path COPY'd from the build context passes .dockerignore", () => {
    const reincluded = dockerignore
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l.startsWith("!"))
      .map((l) => l.slice(1).replace(/\/$/, ""));
    expect(dockerignore.split("\n").map((l) => l.trim())).toContain("*");
    const copied = all
      .flatMap((s) => s.instructions)
      .filter((i) => i.op === "COPY" && !i.args.includes("--from"))
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith("--")).slice(0, -1))
      .filter((src) => src !== ".");
    expect(copied.length).toBeGreaterThan(2);
    for (const src of copied) {
      const clean = src.replace(/\/$/, "");
      expect(reincluded.some((r) => clean === r || clean.startsWith(`${r}/`)), src).toBe(true);
      expect(existsSync(repo(clean)), src).toBe(true);
    }
  });
});

describe("deploy/docker/healthcheck.ts", () => {
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req) => new Response(null, { status: new URL(req.url).pathname === "/health" ? 200 : 503 }),
  });
  afterAll(() => server.stop(true));
  const probe = async (path: string, port: number) =>
    (
      await runAsync([process.execPath, repo("deploy/docker/healthcheck.ts"), path], {
        env: { PORT: String(port), HEALTHCHECK_TIMEOUT_MS: "2000" },
      })
    ).code;

  test("exits 0 on 2xx, 1 on 503 or an unreachable port, 2 on bad arguments", async () => {
    expect(await probe("/health", server.port!)).toBe(0);
    expect(await probe("/ready", server.port!)).toBe(1);
    expect(await probe("health", server.port!)).toBe(2);
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const port = closed.port!;
    await closed.stop(true);
    expect(await probe("/health", port)).toBe(1);
  });
});
