/**
 * Where one statement's execution time goes, part by part: reads a Postgres server log written with
 * auto_explain (every plan logged with its actual times) and averages, over every run of the
 * statement whose text contains `--match`, the time of each part at the top of its plan: the main
 * node, each CTE and each InitPlan. For the statements that are one big WITH (the ingest, the take),
 * this is what statement-log.ts cannot say.
 *
 *   npm run bench -- --transport=postgres --no-ceilings --peers=none --phases=warmup,latency-1000 \
 *     --db-set=session_preload_libraries=auto_explain --db-set=auto_explain.log_min_duration=0 \
 *     --db-set=auto_explain.log_analyze=on
 *   bun loadtest/bench/plan-parts.ts <server log> --match="with fresh as" [--from-line=N] [--skip=N]
 *
 * How to read it: a CTE that the main node reads runs inside it, so its time is counted in the main
 * node's too; a data-modifying CTE nobody reads runs to completion after the main node, on its own.
 * Timing every node costs time itself (auto_explain's instrumentation), so the shares say more than
 * the milliseconds. `--skip` leaves out the first runs (the warm-up, its tables still small).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

export interface PlanPart {
  part: string;
  /** Mean milliseconds per run of the statement (the part's actual total time × loops). */
  meanMs: number;
}

export interface PlanParts {
  runs: number;
  /** Mean of auto_explain's `duration`: the statement's execution, as the plan was timed. */
  meanDurationMs: number;
  parts: PlanPart[];
}

const PLAN_HEAD = /duration: ([\d.]+) ms\s+plan:/;
// A part: two spaces in from the plan's first line, its actual time on the next line.
const PART = /^\t {2}(CTE \w+|InitPlan \d+)/;
const MAIN = /^\t([A-Z][\w ]*?)\s+\(cost=.*actual time=[\d.]+\.\.([\d.]+) rows=\d+ loops=(\d+)\)/;
const ACTUAL = /actual time=[\d.]+\.\.([\d.]+) rows=\d+ loops=(\d+)/;

/** Parses a server log's auto_explain entries (lines after a plan's head start with a tab). */
export function planParts(log: string, match: string, skip = 0): PlanParts {
  const plans: { durationMs: number; lines: string[] }[] = [];
  let current: { durationMs: number; lines: string[] } | null = null;
  for (const line of log.split("\n")) {
    const head = PLAN_HEAD.exec(line);
    if (head) plans.push((current = { durationMs: Number(head[1]), lines: [] }));
    else if (current && line.startsWith("\t")) current.lines.push(line);
    else current = null;
  }
  const runs = plans.filter((p) => p.lines.slice(0, 4).some((l) => l.includes(match))).slice(skip);
  const totals = new Map<string, number>();
  const add = (part: string, ms: number) => totals.set(part, (totals.get(part) ?? 0) + ms);
  for (const { lines } of runs) {
    lines.forEach((line, i) => {
      const main = MAIN.exec(line);
      if (main) return add(`main: ${main[1]}`, Number(main[2]) * Number(main[3]));
      const part = PART.exec(line);
      const actual = part && ACTUAL.exec(lines[i + 1] ?? "");
      if (part && actual) add(part[1]!, Number(actual[1]) * Number(actual[2]));
    });
  }
  const n = Math.max(1, runs.length);
  return {
    runs: runs.length,
    meanDurationMs: runs.reduce((sum, p) => sum + p.durationMs, 0) / n,
    parts: [...totals].map(([part, ms]) => ({ part, meanMs: ms / n })).sort((a, b) => b.meanMs - a.meanMs),
  };
}

export function planPartLines(result: PlanParts): string[] {
  const share = (ms: number) => `${((100 * ms) / (result.meanDurationMs || 1)).toFixed(0)}%`;
  return [
    `${result.runs} runs, ${result.meanDurationMs.toFixed(3)} ms each on average (auto_explain's duration)`,
    "",
    "| part | mean ms per run | share of the duration |",
    "| --- | ---: | ---: |",
    ...result.parts.map((p) => `| ${p.part} | ${p.meanMs.toFixed(4)} | ${share(p.meanMs)} |`),
  ];
}

if (import.meta.main) {
  const { values: args, positionals } = parseArgs({
    allowPositionals: true,
    options: { match: { type: "string" }, "from-line": { type: "string", default: "0" }, skip: { type: "string", default: "0" } },
  });
  if (!positionals[0] || !args.match) throw new Error("usage: plan-parts.ts <postgres server log> --match=TEXT [--from-line=N] [--skip=N]");
  const log = readFileSync(positionals[0], "utf8").split("\n").slice(Number(args["from-line"])).join("\n");
  console.log(planPartLines(planParts(log, args.match, Number(args.skip))).join("\n"));
}
