/**
 * The Helm chart (helm/evently): lints, renders for the default values and every ci/*-values.yaml,
 * every rendered object validates against the Kubernetes (and Prometheus Operator) schemas from
 * kubernetes-models, and the objects fit together (selectors, references, secrets, hooks).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { CONFIG_ENV, helm, type Manifest, parseYamlStream, readText, repo, run, runOk, SECRET_ENV } from "./support.ts";

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
    // The chart sets HOST and PORT itself; the embedded Postgres's settings never apply (it sets DATABASE_URL).
    const notInChart = new Set(["HOST", "PORT", "EVENTLY_DATA_DIR", "EMBEDDED_POSTGRES_PORT"]);
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

  test("image.tag and image.digest override the appVersion", () => {
    const tagged = of(template(["--set", "image.tag=9.9.9"]), "Deployment")[0]!;
    expect(tagged.spec.template.spec.containers[0].image).toEndWith(":9.9.9");
    const digest = `sha256:${"a".repeat(64)}`;
    const pinned = of(template(["--set", `image.digest=${digest}`]), "Deployment")[0]!;
    expect(pinned.spec.template.spec.containers[0].image).toEndWith(`@${digest}`);
  });

  test("changing a secret or a setting changes the pod template (rolls the pods)", () => {
    const annotations = (args: string[]) => of(template(args), "Deployment")[0]!.spec.template.metadata.annotations;
    const base = annotations([]);
    expect(annotations(["--set", "config.LOG_LEVEL=debug"])["checksum/config"]).not.toBe(base["checksum/config"]);
    expect(annotations(["--set", "secrets.apiKey=0123456789abcdefXYZ"])["checksum/secret"]).not.toBe(base["checksum/secret"]);
  });

  test("names stay within 63 characters for the longest release names", () => {
    const docs = parseYamlStream(runOk([helm(), "template", "r".repeat(53), CHART]));
    for (const d of docs) expect(d.metadata.name.length).toBeLessThanOrEqual(63);
    expect(coherenceProblems(docs, {})).toEqual([]);
  });

  test.each([
    ["a short API key", ["--set", "secrets.apiKey=short"], "apiKey"],
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
