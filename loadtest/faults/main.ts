import { passed, type Scenario, type ScenarioResult } from "./scenario.ts";
import { apiKill } from "./scenarios/api-kill.ts";
import { brokerOutage } from "./scenarios/broker-outage.ts";
import { flowControl } from "./scenarios/flow-control.ts";
import { hostileReceivers } from "./scenarios/hostile-receivers.ts";
import { postgresRestart } from "./scenarios/postgres-restart.ts";
import { workerKill } from "./scenarios/worker-kill.ts";
import { healAll, rabbitReady, postgresReady, startPostgres, startRabbitApp } from "./services.ts";
import { dropTemplate, killAllChildren, prepareTemplate, stopAllStacks } from "./stack.ts";
import { resultLine } from "./tally.ts";

/**
 * `npm run faults`: fault injection against real installations, one scenario at a time. Each
 * scenario starts its own installation (api, dispatcher, workers as processes, on a scratch
 * database and AMQP prefix), drives a steady stream of events at loopback receivers, breaks
 * something (a worker or the API SIGKILLed, RabbitMQ or Postgres stopped, hostile receivers, flow
 * control pushed), heals it, waits for everything to settle and counts. Each prints one line
 *   scenario=<name> accepted=N delivered=N dead=N expired=N lost=0 duplicates=N
 * after its measurements; it passes with lost=0 and its own checks. Exits 1 if any scenario failed.
 *
 * Breaking Postgres and RabbitMQ breaks them for everything on this machine that uses them: run it
 * where nothing else needs them meanwhile (CI runs it after the tests). Every break is healed in a
 * finally and again on SIGINT/SIGTERM and the watchdog.
 *
 *   --only <substring>   run the scenarios whose name contains it (repeatable)
 */
const WATCHDOG_MS = Number(process.env.FAULTS_WATCHDOG_MS ?? 600_000);

const t0 = performance.now();
const stamp = () => `[faults ${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
const log = (msg: string) => console.log(`${stamp()} ${msg}`);

const scenarios: Scenario[] = [
  workerKill("rabbitmq"),
  workerKill("postgres"),
  brokerOutage(),
  postgresRestart("rabbitmq"),
  postgresRestart("postgres"),
  hostileReceivers("rabbitmq"),
  flowControl("rabbitmq"),
  apiKill("rabbitmq"),
  apiKill("postgres"),
];

const only: string[] = [];
for (let i = 2; i < process.argv.length; i++) if (process.argv[i] === "--only") only.push(process.argv[++i] ?? "");
const selected = only.length ? scenarios.filter((s) => only.some((o) => s.name.includes(o))) : scenarios;

let exiting = false;
async function emergencyExit(why: string, code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    log(why);
    killAllChildren();
    await healAll();
    await stopAllStacks();
    await dropTemplate();
  }
  process.exit(code);
}
const watchdog = setTimeout(() => void emergencyExit(`FAILED: the suite ran past ${WATCHDOG_MS / 1000} s; stopping`, 1), WATCHDOG_MS);
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void emergencyExit(`stopped by ${signal}`, 130));
process.on("unhandledRejection", (err) => void emergencyExit(`FAILED: ${(err as Error).stack ?? String(err)}`, 1));

// Both servers up before anything (a previous run or another process may have left one down).
await startPostgres();
if (!(await rabbitReady())) await startRabbitApp();
if (!(await postgresReady())) await emergencyExit("FAILED: postgres is not reachable on 127.0.0.1:5432", 1);
await prepareTemplate();
log(`${selected.length} scenarios: ${selected.map((s) => s.name).join(", ")}`);

const results: ScenarioResult[] = [];
for (const scenario of selected) {
  const started = performance.now();
  const slog = (msg: string) => log(`${scenario.name}: ${msg}`);
  let result: ScenarioResult;
  try {
    result = await scenario.run(slog);
  } catch (err) {
    result = { name: scenario.name, checks: [{ name: "the scenario ran to its end", ok: false, detail: (err as Error).stack ?? String(err) }] };
  }
  // Whatever the scenario did, the servers are up for the next one.
  await healAll();
  await startPostgres().catch((err) => slog(`postgres did not come back: ${(err as Error).message}`));
  await startRabbitApp().catch((err) => slog(`rabbitmq did not come back: ${(err as Error).message}`));
  results.push(result);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  for (const c of result.checks) slog(`${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  if (result.skipped !== undefined) console.log(`scenario=${result.name} skipped: ${result.skipped}`);
  else if (result.tally) console.log(resultLine(result.name, result.tally));
  else console.log(`scenario=${result.name} failed before counting`);
  slog(`${passed(result) ? "passed" : "FAILED"} in ${seconds} s`);
}

clearTimeout(watchdog);
await dropTemplate();
const failed = results.filter((r) => !passed(r));
const skipped = results.filter((r) => r.skipped !== undefined);
const total = ((performance.now() - t0) / 1000).toFixed(1);
console.log(
  `faults: ${results.length} scenarios, ${results.length - failed.length - skipped.length} passed, ${failed.length} failed, ${skipped.length} skipped in ${total} s` +
    (failed.length ? ` (failed: ${failed.map((r) => r.name).join(", ")})` : ""),
);
process.exit(failed.length === 0 ? 0 : 1);
