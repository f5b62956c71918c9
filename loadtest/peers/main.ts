import { PEERS } from "./drivers.ts";
import { isPeerName, type PeerConfig } from "./peer.ts";
import { serveProducer } from "./producer.ts";
import { webhookSender } from "./sender.ts";

/**
 * One process of a peer: `bun loadtest/peers/main.ts <graphile|bullmq> <producer|worker>`, with
 * the run's PeerConfig as JSON in PEER_CONFIG (launch.ts sets it). Both listen on a port of their
 * own, printed in a `{"msg":"peer started","port":…}` line: the producer's routes, or the worker's
 * /ready. SIGTERM stops taking work, lets what runs finish, and exits.
 */
const [name = "", role] = Bun.argv.slice(2);
if (!isPeerName(name) || (role !== "producer" && role !== "worker")) throw new Error("usage: main.ts <graphile|bullmq> <producer|worker>");
const driver = PEERS[name];
const config = JSON.parse(process.env.PEER_CONFIG ?? "null") as PeerConfig;
if (!config) throw new Error("PEER_CONFIG is not set");

let stop: () => Promise<void>;
let port: number;
if (role === "producer") {
  const producer = await driver.openProducer(config);
  const server = serveProducer({
    producer,
    endpoints: config.endpoints,
    groupCommit: Boolean(config.settings.groupCommit),
    groupCommitInFlight: Number(config.settings.groupCommitInFlight),
  });
  port = server.port!;
  stop = async () => {
    await server.stop();
    await producer.close();
  };
} else {
  const worker = await driver.startWorker(config, webhookSender(config.endpoints));
  const health = Bun.serve({ port: 0, hostname: "127.0.0.1", development: false, fetch: () => new Response("ok") });
  port = health.port!;
  stop = async () => {
    await worker.close();
    await health.stop(true);
  };
}
console.log(JSON.stringify({ msg: "peer started", peer: name, role, port }));
process.once("SIGTERM", () => {
  void stop().then(
    () => process.exit(0),
    (err) => {
      console.error(JSON.stringify({ level: "error", msg: `stopping: ${(err as Error).message}` }));
      process.exit(1);
    },
  );
});
