/**
 * The Helm chart (helm/evently): lints, renders for the default values and every ci/*-values.yaml,
 * every rendered object validates against the Kubernetes (and Prometheus Operator) schemas from
 * kubernetes-models, and the objects fit together (selectors, references, secrets, hooks).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { CONFIG_ENV, helm, type Manifest, parseYamlStream, readText, REMOVED_ENV, repo, run, runOk, SECRET_ENV } from "./support.ts";

const CHART = repo("helm/evently");
const RELEASE = "prod";
const ROLES = ["api", "worker", "dispatcher"] as const;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const chartMeta = Bun.YAML.parse(await readText("helm/evently/Chart.yaml")) as { appVersion: string; version: string };
const valuesText = await readText("helm/evently/values.yaml");
const schema = JSON.parse(await readText("helm/evently/values.schema.json")) as JsonSchema;
const ciFiles = readdirSync(repo("helm/evently/ci")).filter((f) => f.endsWith("-values.yaml")).sort();

interface JsonSchema {
  properties?: Record<string, JsonSchema>;
}
type Obj = Record<string, any>;

const ADMIN_KEY = "admin-0123456789abcdef0123456789abcdef";
const KEY_A = Buffer.alloc(32, 1).toString("base64");
const KEY_B = Buffer.alloc(32, 2).toString("base64");
const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
/** `scheme://user:password@`: a URL that carries a password (`<password>` placeholders aside). */
const URL_PASSWORD = /[a-z][a-z0-9+.-]*:\/\/[^\s:/@"'<>]+:[^\s/@"'<>]*@/gi;

function template(args: string[]): Manifest[] {
  return parseYamlStream(runOk([helm(), "template", RELEASE, CHART, "--namespace", "evently", ...args]));
}

const kindModule = (m: Manifest) =>
  m.apiVersion.startsWith("monitoring.coreos.com/")
    ? `@kubernetes-models/prometheus-operator/${m.apiVersion}/${m.kind}`
    : `kubernetes-models/${m.apiVersion}/${m.kind}`;

async function validate(m: Manifest): Promise<void> {
  const mod = (await import(kindModule(m))) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = mod[m.kind];
  if (!Model) throw new Error(`no model for ${m.apiVersion} ${m.kind}`);
  new Model(m).validate();
}

const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

const of = (docs: Manifest[], kind: string) => docs.filter((d) => d.kind === kind) as Obj[];
const podTemplates = (docs: Manifest[]) =>
  [...of(docs, "Deployment"), ...of(docs, "Job")].map((d) => ({ owner: d as Manifest, pod: d.spec.template as Obj }));

/** Structural checks that JSON schemas cannot express. Returns a list of problems. */
function coherenceProblems(docs: Manifest[], values: { existingSecret?: string }): string[] {
  const problems: string[] = [];
  const names = new Map(docs.map((d) => [`${d.kind}/${d.metadata.name}`, d]));
  const has = (kind: string, name: string) => names.has(`${kind}/${name}`);

  for (const d of docs) {
    const id = `${d.kind}/${d.metadata.name}`;
    if (!DNS_LABEL.test(d.metadata.name) || d.metadata.name.length > 63) problems.push(`${id}: name is not a DNS label`);
    for (const [k, v] of Object.entries(d.metadata.labels ?? {}))
      if (String(v).length > 63) problems.push(`${id}: label ${k} longer than 63`);
  }
  for (const s of of(docs, "Service"))
    if (!/^[a-z]/.test(s.metadata.name)) problems.push(`Service/${s.metadata.name}: must start with a letter`);

  for (const dep of of(docs, "Deployment")) {
    const id = `Deployment/${dep.metadata.name}`;
    const selector: Record<string, string> = dep.spec.selector.matchLabels;
    if (!matches(selector, dep.spec.template.metadata.labels)) problems.push(`${id}: selector does not match its pods`);
    for (const key of Object.keys(selector))
      if (!["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"].includes(key))
        problems.push(`${id}: mutable label ${key} in selector`);
    const [container, ...rest] = dep.spec.template.spec.containers as Obj[];
    if (!container || rest.length) problems.push(`${id}: expected one container`);
    else {
      const role = container.args?.[0];
      if (!ROLES.includes(role)) problems.push(`${id}: role argument ${role}`);
      if (container.livenessProbe?.httpGet?.path !== "/health") problems.push(`${id}: liveness probe is not /health`);
      if (container.readinessProbe?.httpGet?.path !== "/ready") problems.push(`${id}: readiness probe is not /ready`);
      if (container.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${id}: privilege escalation allowed`);
    }
    if (dep.spec.template.spec.securityContext?.runAsNonRoot !== true) problems.push(`${id}: may run as root`);
  }

  for (const { owner, pod } of podTemplates(docs)) {
    const id = `${owner.kind}/${owner.metadata.name}`;
    for (const c of pod.spec.containers as Obj[]) {
      for (const ref of (c.envFrom ?? []) as Obj[]) {
        if (ref.configMapRef && !has("ConfigMap", ref.configMapRef.name))
          problems.push(`${id}: missing ConfigMap ${ref.configMapRef.name}`);
        const secret = ref.secretRef?.name;
        if (secret && !has("Secret", secret) && secret !== values.existingSecret) problems.push(`${id}: missing Secret ${secret}`);
      }
      for (const e of (c.env ?? []) as Obj[])
        if (SECRET_ENV.has(e.name) && e.value !== undefined) problems.push(`${id}: secret ${e.name} as a plain env value`);
    }
  }

  for (const cm of of(docs, "ConfigMap"))
    for (const [key, value] of Object.entries((cm.data ?? {}) as Record<string, string>)) {
      if (SECRET_ENV.has(key)) problems.push(`ConfigMap/${cm.metadata.name}: holds secret ${key}`);
      if (!CONFIG_ENV.has(key)) problems.push(`ConfigMap/${cm.metadata.name}: ${key} is not an Evently setting`);
      if (/:\/\/[^/\s]*:[^/\s]*@/.test(value)) problems.push(`ConfigMap/${cm.metadata.name}: ${key} holds credentials`);
    }
  for (const s of of(docs, "Secret"))
    for (const key of Object.keys(s.data ?? {}))
      if (!SECRET_ENV.has(key)) problems.push(`Secret/${s.metadata.name}: unexpected key ${key}`);

  const longRunningPods = of(docs, "Deployment").map((d) => d.spec.template.metadata.labels as Record<string, string>);
  for (const svc of of(docs, "Service")) {
    const selected = longRunningPods.filter((labels) => matches(svc.spec.selector, labels));
    if (selected.length === 0) problems.push(`Service/${svc.metadata.name}: selects no pods`);
    const jobPods = of(docs, "Job").filter((j) => matches(svc.spec.selector, j.spec.template.metadata.labels));
    if (jobPods.length) problems.push(`Service/${svc.metadata.name}: selects one-shot Job pods`);
  }
  for (const hpa of of(docs, "HorizontalPodAutoscaler")) {
    const target = names.get(`Deployment/${hpa.spec.scaleTargetRef.name}`) as Obj | undefined;
    if (!target) problems.push(`HPA/${hpa.metadata.name}: no such Deployment`);
    else if (target.spec.replicas !== undefined) problems.push(`HPA/${hpa.metadata.name}: Deployment also sets replicas`);
  }
  for (const pdb of of(docs, "PodDisruptionBudget"))
    if (!longRunningPods.some((labels) => matches(pdb.spec.selector.matchLabels, labels)))
      problems.push(`PDB/${pdb.metadata.name}: selects no pods`);
  for (const sm of of(docs, "ServiceMonitor"))
    if (!of(docs, "Service").some((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels)))
      problems.push(`ServiceMonitor/${sm.metadata.name}: selects no Service`);
  for (const np of of(docs, "NetworkPolicy"))
    if (!longRunningPods.some((labels) => matches(np.spec.podSelector.matchLabels, labels)))
      problems.push(`NetworkPolicy/${np.metadata.name}: selects no pods`);

  for (const job of of(docs, "Job")) {
    const hooks = String(job.metadata.annotations?.["helm.sh/hook"] ?? "").split(",");
    if (!hooks.includes("pre-install") || !hooks.includes("pre-upgrade"))
      problems.push(`Job/${job.metadata.name}: not a pre-install/pre-upgrade hook`);
    const c = job.spec.template.spec.containers[0] as Obj;
    if (c.args?.[0] !== "migrate") problems.push(`Job/${job.metadata.name}: does not run migrate`);
    // The hook cannot read the ConfigMap (it may not exist yet), so it must inline the same settings.
    const env = new Map(((c.env ?? []) as Obj[]).map((e) => [e.name as string, e.value as string | undefined]));
    for (const cm of of(docs, "ConfigMap"))
      for (const [key, value] of Object.entries((cm.data ?? {}) as Record<string, string>))
        if (key !== "HOST" && key !== "PORT" && env.get(key) !== value)
          problems.push(`Job/${job.metadata.name}: ${key} differs from the ConfigMap`);
    for (const ref of (c.envFrom ?? []) as Obj[]) {
      const secret = ref.secretRef && (names.get(`Secret/${ref.secretRef.name}`) as Obj | undefined);
      // A chart-made Secret the hook reads must itself be a hook that runs first, or it would not exist yet.
      if (secret && !String(secret.metadata.annotations?.["helm.sh/hook"] ?? "").includes("pre-install"))
        problems.push(`Job/${job.metadata.name}: reads release Secret ${secret.metadata.name}, which does not exist before install`);
      if (ref.configMapRef) problems.push(`Job/${job.metadata.name}: reads the release ConfigMap, which does not exist before install`);
    }
  }
  return problems;
}

/** Leaves of values.yaml that have no `# --` comment (on themselves or a documented ancestor). */
function undocumentedValues(text: string): { undocumented: string[]; documented: string[] } {
  const lines = text.split("\n");
  const stack: { indent: number; key: string; documented: boolean }[] = [];
  const undocumented: string[] = [];
  const documented: string[] = [];
  const significant = (l: string) => l.trim() !== "" && !l.trim().startsWith("#");
  lines.forEach((line, i) => {
    const m = /^(\s*)([A-Za-z0-9_.-]+):(.*)$/.exec(line);
    if (!m) return;
    const indent = m[1]!.length;
    while (stack.length && stack[stack.length - 1]!.indent >= indent) stack.pop();
    if (stack.some((s) => s.documented)) return; // data inside a documented value
    let j = i - 1;
    const comments: string[] = [];
    while (j >= 0 && lines[j]!.trim().startsWith("#")) comments.unshift(lines[j--]!.trim());
    const own = comments.some((c) => c.startsWith("# --"));
    const next = lines.slice(i + 1).find(significant) ?? "";
    const nextIndent = next.length - next.trimStart().length;
    const leaf = m[3]!.trim() !== "" || nextIndent <= indent || next.trim().startsWith("- ");
    const keyPath = [...stack.map((s) => s.key), m[2]!].join(".");
    if (own) documented.push(keyPath);
    else if (leaf) undocumented.push(keyPath);
    stack.push({ indent, key: m[2]!, documented: own });
  });
  return { undocumented, documented };
}

describe("helm chart", () => {
  test("Chart.yaml has a SemVer version and an appVersion", () => {
    expect(chartMeta.version).toMatch(/^\d+\.\d+\.\d+(-[\w.]+)?$/);
    expect(chartMeta.appVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("every value in values.yaml is documented and known to values.schema.json", () => {
    const { undocumented, documented } = undocumentedValues(valuesText);
    expect(undocumented).toEqual([]);
    expect(documented.length).toBeGreaterThan(50);
    const missing = documented.filter((p) => {
      let node: JsonSchema | undefined = schema;
      for (const part of p.split(".")) node = node?.properties?.[part];
      return node === undefined;
    });
    expect(missing).toEqual([]);
  });

  test("config covers every non-secret Evently setting, and nothing else", () => {
    const values = Bun.YAML.parse(valuesText) as { config: Record<string, unknown> };
    // The chart sets HOST and PORT itself, and QUEUE_HANDOVER_URL for workers (worker.handover); the
    // embedded Postgres's settings never apply (it sets DATABASE_URL).
    const notInChart = new Set(["HOST", "PORT", "QUEUE_HANDOVER_URL", "EVENTLY_DATA_DIR", "EMBEDDED_POSTGRES_PORT", ...REMOVED_ENV]);
    const expected = [...CONFIG_ENV].filter((k) => !SECRET_ENV.has(k) && !notInChart.has(k)).sort();
    expect(Object.keys(values.config).sort()).toEqual(expected);
    expect(Object.keys(schema.properties?.config?.properties ?? {}).sort()).toEqual(expected);
  });

  test("there are ci values files to render", () => {
    expect(ciFiles.length).toBeGreaterThanOrEqual(3);
  });

  for (const file of [null, ...ciFiles]) {
    const label = file ?? "default values";
    const args = file ? ["-f", repo("helm/evently/ci", file)] : [];
    const values = (file ? Bun.YAML.parse(readFileSync(repo("helm/evently/ci", file), "utf8")) : {}) as Obj;

    test(`${label}: helm lint --strict passes`, () => {
      const r = run([helm(), "lint", "--strict", CHART, ...args]);
      expect(r.stdout + r.stderr).toContain("0 chart(s) failed");
      expect(r.code).toBe(0);
    });

    test(`${label}: every rendered object is valid and the objects fit together`, async () => {
      const docs = template(args);
      expect(docs.length).toBeGreaterThan(3);
      for (const d of docs) {
        try {
          await validate(d);
        } catch (err) {
          throw new Error(`${d.kind}/${d.metadata.name}: ${(err as Error).message}`);
        }
      }
      expect(coherenceProblems(docs, { existingSecret: values.secrets?.existingSecret })).toEqual([]);
    });
  }
});

describe("helm chart rendering rules", () => {
  test("defaults: three roles, image tag = appVersion, migrate hook, no optional extras", () => {
    const docs = template([]);
    const deployments = of(docs, "Deployment");
    expect(deployments.map((d) => d.spec.template.spec.containers[0].args[0]).sort()).toEqual([...ROLES].sort());
    for (const d of deployments)
      expect(d.spec.template.spec.containers[0].image).toBe(`ghcr.io/evently/evently:${chartMeta.appVersion}`);
    expect(of(docs, "Job").map((j) => j.metadata.name)).toEqual([`${RELEASE}-evently-migrate`]);
    for (const kind of ["ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "Ingress"])
      expect(of(docs, kind)).toEqual([]);
  });

  test("with the Postgres transport the dispatcher, which would idle, is not deployed", () => {
    const docs = template(["--set", "config.QUEUE_TRANSPORT=postgres", "--set", "dispatcher.pdb.enabled=true"]);
    const roles = of(docs, "Deployment").map((d) => d.spec.template.spec.containers[0].args[0]);
    expect(roles.sort()).toEqual(["api", "worker"]);
    expect(of(docs, "PodDisruptionBudget")).toEqual([]);
    const config = of(docs, "ConfigMap").find((c) => c.data?.QUEUE_TRANSPORT !== undefined);
    expect(config?.data.QUEUE_TRANSPORT).toBe("postgres");
  });

  test("workers connect to the API Service for the hand-over, with either transport, which the network policy lets through", () => {
    const handoverUrl = (args: string[]) => {
      const worker = of(template(args), "Deployment").find((d) => d.spec.template.spec.containers[0].args[0] === "worker")!;
      return worker.spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === "QUEUE_HANDOVER_URL")?.value;
    };
    const postgres = ["--set", "config.QUEUE_TRANSPORT=postgres"];
    const docs = template(postgres);
    const service = of(docs, "Service").find((s) => s.metadata.name.endsWith("-api"))!;
    expect(handoverUrl(postgres)).toBe(`http://${service.metadata.name}:${service.spec.ports[0].port}`);
    expect(handoverUrl([])).toBe(handoverUrl(postgres)); // RabbitMQ
    expect(handoverUrl([...postgres, "--set", "worker.handover=false"])).toBeUndefined();
    expect(handoverUrl(["--set", "worker.handover=false"])).toBeUndefined();
    // Only the ingress controller may reach the API: the workers still can.
    const restricted = ["--set", "networkPolicy.enabled=true", "--set-json", 'networkPolicy.apiIngressFrom=[{"namespaceSelector":{"matchLabels":{"name":"ingress"}}}]'];
    const apiPolicy = (args: string[]) => of(template(args), "NetworkPolicy").find((p) => p.metadata.name.endsWith("-api"))!;
    const workerLabels = of(docs, "Deployment").find((d) => d.spec.template.spec.containers[0].args[0] === "worker")!.spec.template.metadata.labels;
    const rules = apiPolicy([...postgres, ...restricted]).spec.ingress;
    expect(rules).toHaveLength(2);
    expect(matches(rules[1].from[0].podSelector.matchLabels, workerLabels)).toBe(true);
    expect(apiPolicy([...restricted, "--set", "worker.handover=false"]).spec.ingress).toHaveLength(1);
  });

  test("image.tag and image.digest override the appVersion", () => {
    const tagged = of(template(["--set", "image.tag=9.9.9"]), "Deployment")[0]!;
    expect(tagged.spec.template.spec.containers[0].image).toEndWith(":9.9.9");
    const digest = `sha256:${"a".repeat(64)}`;
    const pinned = of(template(["--set", `image.digest=${digest}`]), "Deployment")[0]!;
    expect(pinned.spec.template.spec.containers[0].image).toEndWith(`@${digest}`);
  });

  test("changing a secret or a setting changes the pod template (rolls the pods)", () => {
    // Fixed keys: generated ones would differ on every render and prove nothing.
    const keys = ["--set", `secrets.adminApiKey=${ADMIN_KEY}`, "--set", `secrets.encryptionKey=${KEY_A}`];
    const annotations = (args: string[]) => of(template([...keys, ...args]), "Deployment")[0]!.spec.template.metadata.annotations;
    const base = annotations([]);
    expect(annotations([])["checksum/secret"]).toBe(base["checksum/secret"]);
    expect(annotations(["--set", "config.LOG_LEVEL=debug"])["checksum/config"]).not.toBe(base["checksum/config"]);
    expect(annotations(["--set", `secrets.adminApiKey=${ADMIN_KEY}-2`])["checksum/secret"]).not.toBe(base["checksum/secret"]);
    expect(annotations(["--set", `secrets.encryptionPreviousKeys={${KEY_B}}`])["checksum/secret"]).not.toBe(base["checksum/secret"]);
  });

  test("names stay within 63 characters for the longest release names", () => {
    const docs = parseYamlStream(runOk([helm(), "template", "r".repeat(53), CHART]));
    for (const d of docs) expect(d.metadata.name.length).toBeLessThanOrEqual(63);
    expect(coherenceProblems(docs, {})).toEqual([]);
  });

  test.each([
    ["a short admin API key", ["--set", "secrets.adminApiKey=short"], "adminApiKey"],
    ["an encryption key that is not base64 of 32 bytes", ["--set", "secrets.encryptionKey=c2hvcnQ="], "encryptionKey"],
    ["a malformed previous encryption key", ["--set", `secrets.encryptionPreviousKeys={${KEY_A},nope}`], "encryptionPreviousKeys"],
    ["an unknown METRICS_AUTH", ["--set", "config.METRICS_AUTH=none"], "METRICS_AUTH"],
    ["an unknown setting", ["--set", "config.NOT_A_SETTING=1"], "NOT_A_SETTING"],
    ["an unknown queue type", ["--set", "config.AMQP_QUEUE_TYPE=stream"], "AMQP_QUEUE_TYPE"],
    ["a non-postgres database URL", ["--set", "secrets.databaseUrl=mysql://x"], "databaseUrl"],
    ["no database URL and no existing secret", ["--set", "secrets.databaseUrl="], "secrets.databaseUrl is required"],
  ])("rejects %s", (_name, args, message) => {
    const r = run([helm(), "template", RELEASE, CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });
});

describe("helm chart secrets", () => {
  const secretOf = (docs: Manifest[], hook: boolean) =>
    of(docs, "Secret").find((s) => (s.metadata.annotations?.["helm.sh/hook"] !== undefined) === hook);

  test("default values: a Secret with a generated admin key and encryption key, the same in the migration hook's copy", () => {
    const docs = template([]);
    const release = secretOf(docs, false)!;
    expect(release.metadata.name).toBe(`${RELEASE}-evently`);
    // Kept on uninstall: losing the encryption key loses every stored endpoint secret.
    expect(release.metadata.annotations?.["helm.sh/resource-policy"]).toBe("keep");
    const data = decode(release.data);
    expect(data.ADMIN_API_KEY).toMatch(/^\S{32,}$/);
    expect(data.ENCRYPTION_KEY).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(data.ENCRYPTION_KEY!, "base64").length).toBe(32);
    expect(data.ENCRYPTION_PREVIOUS_KEYS).toBeUndefined();
    expect(secretOf(docs, true)!.data).toEqual(release.data);
    // Generated, not written in the chart: another render (no cluster, so no lookup) has other keys.
    const other = decode(secretOf(template([]), false)!.data);
    expect(other.ADMIN_API_KEY).not.toBe(data.ADMIN_API_KEY);
    expect(other.ENCRYPTION_KEY).not.toBe(data.ENCRYPTION_KEY);
  });

  test("default values: no password anywhere in the rendered output, Secrets decoded", () => {
    const text = runOk([helm(), "template", RELEASE, CHART, "--namespace", "evently"]);
    const decoded = of(parseYamlStream(text), "Secret").flatMap((s) => Object.values(decode(s.data)));
    expect([text, ...decoded].flatMap((t) => t.match(URL_PASSWORD) ?? [])).toEqual([]);
    for (const weak of ["evently:evently", "guest:guest", "changeme", "change-me", "password"])
      expect([text, ...decoded].join("\n").toLowerCase()).not.toContain(weak);
    expect(valuesText.match(URL_PASSWORD)).toBeNull();
  });

  test("keys given in the values are used as they are; older keys are joined with commas", () => {
    const docs = template([
      "--set", `secrets.adminApiKey=${ADMIN_KEY}`,
      "--set", `secrets.encryptionKey=${KEY_A}`,
      "--set", `secrets.encryptionPreviousKeys={${KEY_B},${KEY_A.replace(/=$/, "")}}`,
    ]);
    const data = decode(secretOf(docs, false)!.data);
    expect(data).toMatchObject({ ADMIN_API_KEY: ADMIN_KEY, ENCRYPTION_KEY: KEY_A, ENCRYPTION_PREVIOUS_KEYS: `${KEY_B},${KEY_A.replace(/=$/, "")}` });
    expect(secretOf(docs, true)!.data).toEqual(secretOf(docs, false)!.data);
  });

  test("with an existing Secret the chart generates nothing and every pod reads that Secret", () => {
    const docs = template(["--set", "secrets.existingSecret=mine"]);
    expect(of(docs, "Secret")).toEqual([]);
    for (const { pod } of podTemplates(docs))
      expect(((pod.spec.containers[0].envFrom ?? []) as Obj[]).map((e) => e.secretRef?.name).filter(Boolean)).toEqual(["mine"]);
  });

  test("METRICS_AUTH=admin: the ServiceMonitor sends the admin key from the release's Secret", () => {
    const monitor = (args: string[]) =>
      of(template(["--set", "metrics.serviceMonitor.enabled=true", ...args]), "ServiceMonitor")[0]!.spec.endpoints[0];
    expect(monitor([]).authorization).toBeUndefined();
    expect(monitor(["--set", "config.METRICS_AUTH=admin"]).authorization).toEqual({
      type: "Bearer",
      credentials: { name: `${RELEASE}-evently`, key: "ADMIN_API_KEY" },
    });
    expect(monitor(["--set", "config.METRICS_AUTH=admin", "--set", "secrets.existingSecret=mine"]).authorization.credentials.name).toBe("mine");
  });

  test("NOTES.txt tells how to read the admin key, and warns that the default URLs carry no password", () => {
    const notes = (args: string[]) => {
      const out = runOk([helm(), "install", RELEASE, CHART, "--namespace", "evently", "--dry-run=client", ...args]);
      return out.slice(out.indexOf("NOTES:"));
    };
    const defaults = notes([]);
    expect(defaults).toContain(`kubectl -n evently get secret ${RELEASE}-evently -o jsonpath='{.data.ADMIN_API_KEY}' | base64 -d`);
    expect(defaults).toContain("WARNING: secrets.databaseUrl names no password");
    expect(defaults).toContain("WARNING: secrets.amqpUrl names no password");
    const existing = notes(["--set", "secrets.existingSecret=mine"]);
    expect(existing).toContain("get secret mine -o jsonpath='{.data.ADMIN_API_KEY}'");
    expect(existing).not.toContain("WARNING");
    const given = notes(["--set", "secrets.databaseUrl=postgres://evently:pw@db:5432/evently", "--set", "secrets.amqpUrl=amqp://evently:pw@mq:5672"]);
    expect(given).not.toContain("WARNING");
  });
});
