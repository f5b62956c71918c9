import type { AmqpCeiling, Ceilings, PostgresCeiling, Probe } from "./ceilings.ts";
import type { PhaseResult } from "./phases.ts";

/** Everything one `bun run bench` produced; written as JSON and rendered as Markdown. */
export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  /** git describe of the tree measured, when available. */
  revision: string;
  stack: { roles: string[]; env: Record<string, string> };
  ceilings: Ceilings | null;
  phases: PhaseResult[];
  /** Every phase delivered every accepted event and saw no invalid signature. */
  passed: boolean;
  failures: string[];
}

const n = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v >= 100 ? n(v) : v.toFixed(1));

function probe<T>(p: Probe<T> | undefined, render: (v: T) => string): string {
  if (p === undefined) return "not measured";
  return "error" in (p as object) ? `failed: ${(p as { error: string }).error}` : render(p as T);
}

function ceilingLines(c: Ceilings): string[] {
  const amqp = (a: AmqpCeiling) => `${n(a.messagesPerSec)} msg/s (${n(a.messageBytes)} B, ${a.queueType}, ${a.window} unconfirmed)`;
  return [
    "| Probe | Result |",
    "| --- | --- |",
    `| Postgres, 500-row unnest inserts, 2 in flight | ${probe(c.postgres, (p: PostgresCeiling) => `${n(p.batchRowsPerSec)} rows/s (${p.payloadBytes} B jsonb)`)} |`,
    `| Postgres, one row per commit, 32 in flight | ${probe(c.postgres, (p: PostgresCeiling) => `${n(p.singleRowsPerSec)} rows/s`)} |`,
    `| RabbitMQ confirmed persistent publish, 1 job/message | ${probe(c.rabbitmq.single, amqp)} |`,
    `| RabbitMQ confirmed persistent publish, 64 jobs/message | ${probe(c.rabbitmq.batch64, (a) => `${amqp(a)} = ${n(a.messagesPerSec * 64)} jobs/s`)} |`,
    `| Bun.serve JSON POST → 202, fetch with 64 in flight | ${probe(c.http, (h) => `${n(h.requestsPerSec)} req/s (p50 ${ms(h.p50Ms)} ms, p99 ${ms(h.p99Ms)} ms)`)} |`,
  ];
}

export function renderMarkdown(r: BenchReport): string {
  const lines: string[] = [
    `# Evently benchmark${r.quick ? " (quick)" : ""}`,
    "",
    `Run ${r.startedAt} → ${r.finishedAt}, revision \`${r.revision}\`.`,
    r.ceilings ? `Machine: ${r.ceilings.host.cpus} CPUs, ${r.ceilings.host.memoryGiB} GiB, ${r.ceilings.host.platform}, Bun ${r.ceilings.host.bun}.` : "",
    `Stack: ${r.stack.roles.join(", ")} as separate processes, Postgres and RabbitMQ on the same machine.`,
    "",
    `**Verdict: ${r.passed ? "every accepted event was delivered" : "FAILED"}**`,
    ...r.failures.map((f) => `- ${f}`),
    "",
    "## Phases",
    "",
    "Publish rates count events the API answered 202 for (committed). Delivery latency runs from the",
    "event's creation timestamp to its first receipt at the sink, which verifies every signature.",
    "",
    "| Phase | Load | Events accepted | Accepted/s | Publish p50 / p99 (ms) | Errors | Delivered | Delivered/s | Duplicates | Latency p50 / p95 / p99 / max (ms) | Drain after publish |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const p of r.phases) {
    const s = p.spec;
    const load =
      s.mode === "open"
        ? `open loop, ${n(s.eventsPerSecond ?? 0)} events/s, batch ${s.batchSize}`
        : `closed loop, ${s.concurrency} publishers, batch ${s.batchSize}`;
    const l = p.delivery.latencyMs;
    lines.push(
      `| ${s.name} | ${load}, ${s.durationMs / 1000}s | ${n(p.publish.eventsAccepted)} | ${n(p.publish.eventsPerSecond)} | ` +
        `${ms(p.publish.latencyMs.p50)} / ${ms(p.publish.latencyMs.p99)} | ${n(p.publish.errors)}${p.publish.dropped ? ` (+${n(p.publish.dropped)} dropped)` : ""} | ` +
        `${n(p.delivery.unique)} / ${n(p.delivery.expected)} | ${n(p.delivery.deliveriesPerSecond)} | ${n(p.delivery.duplicates)} | ` +
        `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} / ${ms(l.max)} | ${(p.delivery.drainMs / 1000).toFixed(1)} s |`,
    );
  }
  if (r.ceilings) lines.push("", "## This machine's raw ceilings", "", ...ceilingLines(r.ceilings));
  lines.push("", "Settings that differ from the defaults:", "");
  const env = Object.entries(r.stack.env).filter(([k]) => !["DATABASE_URL", "AMQP_URL", "AMQP_PREFIX", "HOST", "PORT", "LOG_LEVEL"].includes(k));
  lines.push(...(env.length ? env.map(([k, v]) => `- \`${k}=${v}\``) : ["- none"]), "");
  return lines.filter((l, i, a) => !(l === "" && a[i - 1] === "")).join("\n");
}
