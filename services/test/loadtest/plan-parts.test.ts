import { expect, test } from "bun:test";
import { planPartLines, planParts } from "../../../loadtest/bench/plan-parts.ts";

/**
 * The auto_explain reader of the bench (loadtest/bench/plan-parts.ts), on log text in the server's
 * own format: only plans of the matched statement count, each part is its actual time × loops, the
 * parts are averaged over the runs, and lines of other log entries end a plan.
 */

const plan = (durationMs: number, query: string, mainMs: number, cteMs: number, initLoops: number) =>
  [
    `2026-12-06 21:00:03.715 UTC [6496] postgres@evently_bench LOG:  duration: ${durationMs} ms  plan:`,
    "\tQuery Text: ",
    `\t  ${query}`,
    `\tNested Loop Left Join  (cost=135.45..151.84 rows=2 width=365) (actual time=0.055..${mainMs} rows=1 loops=1)`,
    "\t  CTE fresh",
    `\t    ->  Limit  (cost=0.14..1.17 rows=3 width=78) (actual time=0.013..${cteMs} rows=1 loops=1)`,
    "\t  InitPlan 17 (returns $25)",
    `\t    ->  Aggregate  (cost=0.11..0.12 rows=1 width=8) (actual time=0.011..0.010 rows=1 loops=${initLoops})`,
  ].join("\n");

test("averages each part of the matched statement's plans over its runs, leaving other statements out", () => {
  const log = [
    plan(0.4, "with fresh as (", 0.2, 0.05, 1),
    "2026-12-06 21:00:03.716 UTC [6497] postgres@evently_bench LOG:  connection received",
    "\tnot part of any plan (Nested Loop  (cost=1..2 rows=1 width=1) (actual time=0.000..9.000 rows=1 loops=1))",
    plan(0.6, "with input as (", 5, 5, 1),
    plan(0.2, "with fresh as (", 0.1, 0.03, 3),
  ].join("\n");
  const result = planParts(log, "with fresh as");
  expect(result.runs).toBe(2);
  expect(result.meanDurationMs).toBeCloseTo(0.3, 6);
  const byPart = Object.fromEntries(result.parts.map((p) => [p.part, p.meanMs]));
  expect(byPart["main: Nested Loop Left Join"]).toBeCloseTo(0.15, 6);
  expect(byPart["CTE fresh"]).toBeCloseTo(0.04, 6);
  expect(byPart["InitPlan 17"]).toBeCloseTo((0.01 + 0.03) / 2, 6); // loops count: 0.010 × 1, then × 3
  expect(result.parts[0]!.part).toBe("main: Nested Loop Left Join"); // largest first
  expect(planPartLines(result)).toContain("| main: Nested Loop Left Join | 0.1500 | 50% |");
});

test("skips the first runs when asked, and says so when nothing matched", () => {
  const log = [plan(1, "with fresh as (", 0.9, 0.1, 1), plan(0.5, "with fresh as (", 0.4, 0.1, 1)].join("\n");
  expect(planParts(log, "with fresh as", 1).meanDurationMs).toBeCloseTo(0.5, 6);
  const none = planParts(log, "with nothing");
  expect(none.runs).toBe(0);
  expect(none.parts).toEqual([]);
});
