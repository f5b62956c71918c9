/**
 * Where Postgres's time goes, statement by statement: reads a Postgres server log written with
 * `log_min_duration_statement=0` and prints, per statement and protocol step (parse, bind,
 * execute), how often it ran, its total and mean time. Durations are the server's own (wall time
 * in the backend, including lock and WAL waits, not CPU alone), so the table says which statements
 * are worth looking at; `/proc` CPU in the bench's phases says what they cost together.
 *
 *   npm run bench -- --transport=postgres --no-ceilings --peers=none --phases=warmup,latency-1000 \
 *     --db-set=log_min_duration_statement=0
 *   bun loadtest/bench/statement-log.ts <server log> [--from-line=N] [--events=N] [--top=25]
 *
 * `--from-line` skips what the log held before the run (`wc -l` of it beforehand); `--events`
 * adds a column of runs per event. The bench's own statements (its readings of pg_stat_*) show up
 * too, a handful of each.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "from-line": { type: "string", default: "0" },
    events: { type: "string" },
    top: { type: "string", default: "25" },
  },
});
const file = positionals[0];
if (!file) throw new Error("usage: statement-log.ts <postgres server log> [--from-line=N] [--events=N] [--top=25]");

// A log entry starts with its timestamp; a statement's later lines follow without one.
const lines = readFileSync(file, "utf8").split("\n").slice(Number(args["from-line"]));
const entries: string[] = [];
for (const line of lines) {
  if (/^\d{4}-\d\d-\d\d /.test(line)) entries.push(line);
  else if (entries.length > 0) entries[entries.length - 1] += ` ${line.trim()}`;
}

interface Row {
  step: string;
  statement: string;
  runs: number;
  ms: number;
}
const rows = new Map<string, Row>();
for (const entry of entries) {
  const m = /duration: ([\d.]+) ms\s+(statement|parse|bind|execute)[^:]*:\s*(.*)$/.exec(entry);
  if (!m) continue;
  // The statement's head names it well enough: its first CTE or its verb and table.
  const statement = m[3]!.replace(/\s+/g, " ").replace(/^with /, "").slice(0, 80);
  const key = `${m[2]}\u0000${statement}`;
  const row = rows.get(key) ?? { step: m[2]!, statement, runs: 0, ms: 0 };
  row.runs++;
  row.ms += Number(m[1]);
  rows.set(key, row);
}

const events = args.events ? Number(args.events) : undefined;
const sorted = [...rows.values()].sort((a, b) => b.ms - a.ms).slice(0, Number(args.top));
const total = [...rows.values()].reduce((sum, r) => sum + r.ms, 0);
console.log(`| step | statement | runs | ${events ? "runs per event | " : ""}total ms | share | mean ms |`);
console.log(`| --- | --- | --- | ${events ? "--- | " : ""}--- | --- | --- |`);
for (const r of sorted) {
  const perEvent = events ? `${(r.runs / events).toFixed(3)} | ` : "";
  console.log(`| ${r.step} | \`${r.statement}\` | ${r.runs} | ${perEvent}${r.ms.toFixed(0)} | ${((100 * r.ms) / total).toFixed(1)}% | ${(r.ms / r.runs).toFixed(3)} |`);
}
console.log(`\n${entries.length} log entries, ${total.toFixed(0)} ms of statement time in all`);
