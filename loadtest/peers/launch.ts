import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeRoleOutput, waitReady } from "../processes.ts";
import { newRunId, watchChild } from "../bench/reaper.ts";
import { PEERS } from "./drivers.ts";
import { settingsOf, type Endpoint, type PeerConfig, type PeerDriver, type PeerName, type PeerSettings, type ProvisionedQueue } from "./peer.ts";

/**
 * A peer for one run, as separate processes the way it would be deployed: its queue provisioned
 * (a scratch database named `evently_graphile_<pid>_<random>`, or a BullMQ queue of that name on
 * Redis), then a worker and a producer, each `bun loadtest/peers/main.ts <peer> <role>`, output in
 * log files. stop() ends both and removes everything the run made on the server.
 */
export interface RunningPeer {
  driver: PeerDriver;
  settings: PeerSettings;
  /** The producer: POST /events, /events/batch. */
  url: string;
  /** producer and worker, and the queue server's process when it is one (redis). */
  pids: Record<string, number>;
  queue: ProvisionedQueue;
  logDir: string;
  stop(): Promise<void>;
}

export interface StartPeerOptions {
  peer: PeerName;
  endpoints: Endpoint[];
  /** Overrides of the driver's tuned defaults (tune.ts tries several). */
  settings?: Record<string, string | number | boolean>;
  log?: (msg: string) => void;
}

const REPO_ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = join(REPO_ROOT, "loadtest/peers/main.ts");
const START_TIMEOUT_MS = 30_000;

export async function startPeer(options: StartPeerOptions): Promise<RunningPeer> {
  const driver = PEERS[options.peer];
  const settings = settingsOf(driver, options.settings);
  const runId = newRunId();
  const logDir = join(tmpdir(), `evently-${driver.name}-${runId}`);
  mkdirSync(logDir, { recursive: true });
  const queue = await driver.provision(runId);
  options.log?.(`peer ${driver.name}: ${queue.database ? `scratch database ${queue.database}` : `queue ${queue.queueName}`}, logs in ${logDir}`);
  const config: PeerConfig = { queueUrl: queue.queueUrl, queueName: queue.queueName, endpoints: options.endpoints, settings };
  const children: ReturnType<typeof Bun.spawn>[] = [];
  const stop = async () => {
    for (const child of children.reverse()) {
      child.kill("SIGTERM");
      const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!exited) child.kill("SIGKILL");
    }
    await queue.remove().catch((err) => options.log?.(`peer ${driver.name} cleanup: ${(err as Error).message}`));
  };
  const spawn = async (role: "worker" | "producer"): Promise<{ pid: number; url: string }> => {
    const proc = Bun.spawn([process.execPath, MAIN, driver.name, role], {
      cwd: REPO_ROOT,
      env: { ...process.env, PEER_CONFIG: JSON.stringify(config) },
      stdout: "pipe",
      stderr: "pipe",
    });
    children.push(proc);
    watchChild(proc.pid);
    const exited = proc.exited.then((code) => Promise.reject(new Error(`${driver.name} ${role} exited with code ${code}; see ${logDir}/${role}.log`)));
    const timeout = Bun.sleep(START_TIMEOUT_MS).then(() => Promise.reject(new Error(`${driver.name} ${role} did not start within ${START_TIMEOUT_MS / 1000} s`)));
    const port = await Promise.race([pipeRoleOutput(proc, join(logDir, `${role}.log`), "peer started"), exited, timeout]);
    const url = `http://127.0.0.1:${port}`;
    await waitReady(url, START_TIMEOUT_MS);
    return { pid: proc.pid, url };
  };
  try {
    const worker = await spawn("worker");
    const producer = await spawn("producer");
    return { driver, settings, url: producer.url, pids: { producer: producer.pid, worker: worker.pid, ...queue.pids }, queue, logDir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
