/**
 * terraform/: formatting, structure (typed and described variables, pinned providers, an example
 * that calls the module with declared inputs) and, with Terraform alone (no providers, no
 * network), the chart values the module computes render into a valid release.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse } from "@cdktf/hcl2json";
import { helm, type Manifest, osTool, parseYamlStream, repo, run, runOk, tempDir } from "./support.ts";

type Obj = Record<string, any>;
const MODULE = repo("terraform/modules/evently");
const EXAMPLE = repo("terraform/examples/basic");

/** All .tf files of a directory, parsed to JSON and merged by top-level block type. */
async function load(dir: string): Promise<Record<string, Obj>> {
  const merged: Record<string, Obj> = {};
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".tf"))) {
    const parsed = (await parse(file, await Bun.file(path.join(dir, file)).text())) as Record<string, Obj>;
    for (const [block, body] of Object.entries(parsed)) {
      if (Array.isArray(body)) merged[block] = [...((merged[block] as unknown[]) ?? []), ...body];
      else merged[block] = { ...merged[block], ...body };
    }
  }
  return merged;
}

const mod = await load(MODULE);
const example = await load(EXAMPLE);
const first = <T>(x: T[] | undefined): T => x![0]!;

describe("terraform module and example", () => {
  test("the module has main.tf, variables.tf, outputs.tf and versions.tf", () => {
    for (const f of ["main.tf", "variables.tf", "outputs.tf", "versions.tf"]) expect(existsSync(path.join(MODULE, f)), f).toBe(true);
  });

  test.each([
    ["module", mod],
    ["example", example],
  ])("every %s variable has a type and a description; every output a description", (_name, tf) => {
    const variables = Object.entries((tf.variable ?? {}) as Record<string, Obj[]>);
    expect(variables.length).toBeGreaterThan(0);
    for (const [name, [v]] of variables) {
      expect(v?.type, `${name} type`).toBeDefined();
      expect(String(v?.description ?? "").length, `${name} description`).toBeGreaterThan(10);
    }
    for (const [name, [o]] of Object.entries((tf.output ?? {}) as Record<string, Obj[]>))
      expect(String(o?.description ?? "").length, `${name} description`).toBeGreaterThan(10);
  });

  test.each([
    ["module", mod],
    ["example", example],
  ])("%s pins the helm and kubernetes providers with ~> constraints", (_name, tf) => {
    const required = first(first(tf.terraform as Obj[]).required_providers as Obj[]);
    expect(required.helm).toEqual({ source: "hashicorp/helm", version: expect.stringMatching(/^~> \d+\.\d+/) });
    expect(required.kubernetes).toEqual({ source: "hashicorp/kubernetes", version: expect.stringMatching(/^~> \d+\.\d+/) });
  });

  test("the module installs the repository's chart by default and keeps secrets out of Helm values", () => {
    const locals = Object.assign({}, ...(mod.locals as Obj[])) as Record<string, string>;
    const chart = /"\$\{path\.module\}\/([^"]+)"/.exec(locals.chart ?? "")?.[1];
    expect(chart).toBeDefined();
    expect(path.resolve(MODULE, chart!)).toBe(repo("helm/evently"));
    const release = first((mod.resource as Obj).helm_release.this as Obj[]);
    expect(release.set_sensitive).toBeUndefined();
    expect((mod.resource as Obj).kubernetes_secret_v1).toBeDefined();
    for (const name of ["database_url", "amqp_url", "api_key"])
      expect(first((mod.variable as Obj)[name] as Obj[]).sensitive, name).toBe(true);
  });

  test("the example calls the module with declared variables only, and sets every required one", () => {
    const call = first((example.module as Obj).evently as Obj[]);
    expect(path.resolve(EXAMPLE, call.source)).toBe(MODULE);
    const declared = (mod.variable ?? {}) as Record<string, Obj[]>;
    const args = Object.keys(call).filter((k) => !["source", "version", "providers", "depends_on"].includes(k));
    expect(args.filter((a) => !(a in declared))).toEqual([]);
    const required = Object.entries(declared).filter(([, [v]]) => v && !("default" in v)).map(([n]) => n);
    expect(required.filter((r) => !args.includes(r))).toEqual([]);
  });
});

describe("terraform CLI", () => {
  const terraform = osTool("terraform");
  const env = { TF_IN_AUTOMATION: "1", CHECKPOINT_DISABLE: "1", TF_CLI_CONFIG_FILE: "/dev/null", TF_INPUT: "0" };

  terraform.test("terraform fmt -check -recursive passes", () => {
    const r = run([terraform.path!, "fmt", "-check", "-recursive", "-diff", "terraform"], { env });
    expect(r.stdout).toBe("");
    expect(r.code).toBe(0);
  });

  /** variables.tf + values.tf hold every expression that feeds the chart and need no provider. */
  let workdir: string | undefined;
  const prepared = (): string => {
    if (workdir) return workdir;
    const dir = tempDir("tf");
    for (const f of ["variables.tf", "values.tf"]) copyFileSync(path.join(MODULE, f), path.join(dir, f));
    writeFileSync(
      path.join(dir, "out.tf"),
      [
        'output "values" { value = yamlencode(local.values) }',
        'output "api_service" { value = local.api_service }',
        'output "secret" { value = local.secret_name }',
      ].join("\n"),
    );
    runOk([terraform.path!, "init", "-backend=false", "-input=false", "-no-color"], { cwd: dir, env });
    return (workdir = dir);
  };

  terraform.test.each([
    ["api_key", "short", "at least 16 characters"],
    ["release_name", "Not_A_Label", "DNS label"],
    ["database_url", "mysql://db/evently", "postgres://"],
    ["amqp_url", "http://mq", "amqp://"],
  ])("rejects %s = %s", (name, value, message) => {
    const dir = prepared();
    const r = run([terraform.path!, "plan", "-input=false", "-no-color", `-var=${name}=${value}`], { cwd: dir, env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  terraform.test("the values the module computes render a valid release that uses the module's Secret", () => {
    const dir = prepared();
    writeFileSync(
      path.join(dir, "test.tfvars"),
      [
        'release_name = "hooks"',
        'image_tag = "1.2.3"',
        'config = { LOG_LEVEL = "debug", WORKER_MAX_IN_FLIGHT = "2048" }',
        "autoscaling = { enabled = true, worker_max_replicas = 50 }",
        'ingress = { host = "hooks.example.com", tls_secret_name = "hooks-tls" }',
        'service_monitor = { enabled = true, labels = { release = "prometheus" } }',
        "pdb_enabled = true",
      ].join("\n"),
    );
    const apply = ["apply", "-auto-approve", "-input=false", "-no-color", "-var-file=test.tfvars", `-state=${dir}/t.tfstate`];
    runOk([terraform.path!, ...apply], { cwd: dir, env });
    const output = (name: string) => runOk([terraform.path!, "output", "-raw", `-state=${dir}/t.tfstate`, name], { cwd: dir, env });
    writeFileSync(path.join(dir, "values.yaml"), output("values"));

    const docs = parseYamlStream(runOk([helm(), "template", "hooks", repo("helm/evently"), "-f", path.join(dir, "values.yaml")]));
    const kinds = (k: string) => docs.filter((d) => d.kind === k) as (Manifest & Obj)[];
    expect(kinds("Secret")).toEqual([]); // the module's kubernetes_secret_v1 is used instead
    expect(kinds("Service").map((s) => s.metadata.name)).toContain(output("api_service"));
    for (const d of kinds("Deployment")) {
      const c = d.spec.template.spec.containers[0];
      expect(c.image).toBe("ghcr.io/evently/evently:1.2.3");
      expect(c.envFrom.map((e: Obj) => e.secretRef?.name).filter(Boolean)).toEqual([output("secret")]);
    }
    expect(kinds("HorizontalPodAutoscaler").length).toBe(2);
    expect(kinds("Ingress")[0]!.spec.tls).toEqual([{ secretName: "hooks-tls", hosts: ["hooks.example.com"] }]);
    expect(kinds("ServiceMonitor")[0]!.metadata.labels!.release).toBe("prometheus");
    expect(kinds("ConfigMap")[0]!.data).toMatchObject({ LOG_LEVEL: "debug", WORKER_MAX_IN_FLIGHT: "2048" });
  });
});
