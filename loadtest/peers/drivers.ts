import { bullmqPeer } from "./bullmq.ts";
import { graphilePeer } from "./graphile.ts";
import type { PeerDriver, PeerName } from "./peer.ts";

/** Every peer by name: what main.ts runs in a child process and launch.ts provisions. */
export const PEERS: Record<PeerName, PeerDriver> = { graphile: graphilePeer, bullmq: bullmqPeer };
