import { createHmac, timingSafeEqual } from "node:crypto";
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import type { Config } from "../config/index.ts";
import type { Logger } from "../log.ts";
import { decodeKey } from "../secrets/cipher.ts";
import { instruments } from "../telemetry/instruments.ts";
import { decodeDeliveryMessage, encodeDeliveryMessage, type JobMessage } from "./messages.ts";
import { handleClaimed, reservationOf, type CommitConsumer, type JobHandler, type Reservation } from "./transport.ts";

/**
 * The hand-over between processes, on either transport: a worker connects to an API process over a
 * WebSocket and says how many jobs it can take; the API's group commits claim the new jobs that fit
 * for it, exactly as a take would (events/sql.ts `claimFor`), and the jobs go to the worker
 * over that connection. On the Postgres transport those need no NOTIFY: the worker saves the
 * wake-up and the take, Postgres the take and the NOTIFY's wake-ups of every listening session ("Why
 * a single event at 1,000/s costs what it costs" in BENCHMARKS.md); role `all` does the same in
 * memory (postgres/transport.ts `OutboxConsumer`). On RabbitMQ nothing is published: the API saves
 * the publish, its confirm and the outbox clear, the worker its claim statement.
 *
 * Nothing depends on the connection for safety: a claim whose jobs never reach the worker (the
 * connection dropped, the worker died) lapses after WORKER_LEASE_MS, and its `lease` outbox entry
 * offers the job again then (a take, or the dispatcher's publish). A worker that is not connected,
 * or has no room, gets its jobs the usual way.
 *
 * Worker → API: text frames `{"granted": n}`, the jobs it will have taken over this connection
 * once it has taken what it has room for (a running total, so a grant never races the jobs in
 * flight towards it), and `{"leaving": true}` when it stops. API → worker: binary frames, each a
 * delivery message exactly as RabbitMQ carries one (messages.ts), checked the same way, and the text
 * frame `{"left": true}` once no commit under way can send it more, after which the worker closes:
 * a worker that stops loses no job to a lapsed claim. The worker trusts what comes as it trusts its
 * broker: QUEUE_HANDOVER_URL, like AMQP_URL, names a process inside the installation's network.
 */
export const HANDOVER_PATH = "/internal/queue/handover";

const TOKEN_CONTEXT = "evently queue hand-over v1";

/**
 * The credential of the hand-over connection: derived from ENCRYPTION_KEY, which every API and
 * worker process holds already, so there is nothing more to configure or to leak. The API accepts
 * one derived from a previous key too, so a key rotation does not cut workers off meanwhile.
 */
export function handoverTokens(secrets: Config["secrets"]): string[] {
  const keys = [secrets.ENCRYPTION_KEY, ...secrets.ENCRYPTION_PREVIOUS_KEYS].filter((key): key is string => key !== undefined);
  return keys.map((key) => createHmac("sha256", decodeKey(key, "ENCRYPTION_KEY")).update(TOKEN_CONTEXT).digest("base64url"));
}

/** One worker's connection, as the API sees it. */
interface Link {
  socket?: ServerWebSocket<Link>;
  /** The worker's latest running total of jobs it will take over this connection. */
  granted: number;
  /** Jobs sent to it over this connection. */
  sent: number;
  /** Room reserved by commits under way. */
  reserved: number;
  open: boolean;
  /**
   * Who ends the connection: the worker (it asked to leave: it gets `left` once the last
   * reservation settles) or this process (it stops: the connection closes then). Either way no new
   * reservations.
   */
  leaving?: "worker" | "api";
}

/**
 * The API's side: the workers connected for the hand-over, offered to ingest as one CommitConsumer.
 * Commits go to them in turn, skipping a worker with no room, as a broker spreads messages over its
 * consumers: choosing by the most room instead starved a worker whose room sat level with another's,
 * the other's grants coming back between two commits.
 */
export class HandoverHub implements CommitConsumer {
  private links: Link[] = [];
  private next = 0;
  private readonly tokens: Buffer[];

  /**
   * @param maxPerCommit most jobs one commit may claim for a worker (QUEUE_TAKE_BATCH, as a take).
   * @param allOrNone CommitConsumer.allOrNone: the RabbitMQ transport's.
   */
  constructor(
    tokens: string[],
    readonly leaseMs: number,
    private readonly maxPerCommit: number,
    private readonly log: Logger,
    readonly allOrNone = false,
  ) {
    this.tokens = tokens.map((token) => Buffer.from(token));
  }

  reserve(): Reservation | null {
    for (let i = 0; i < this.links.length; i++) {
      const link = this.links[(this.next + i) % this.links.length]!;
      const room = link.granted - link.sent - link.reserved;
      if (room <= 0) continue;
      this.next = (this.next + i + 1) % this.links.length;
      return this.reserveIn(link, Math.min(this.maxPerCommit, room));
    }
    return null;
  }

  private reserveIn(link: Link, jobs: number): Reservation {
    link.reserved += jobs;
    return reservationOf(jobs, (claimed) => {
      link.reserved -= jobs;
      if (claimed.length > 0) this.send(link, claimed);
      if (link.leaving && link.reserved === 0) finish(link);
    });
  }

  private send(link: Link, jobs: JobMessage[]): void {
    link.sent += jobs.length;
    // 0: the connection closed or is past its buffer; the claims lapse and the jobs are offered again.
    if (!link.open || link.socket?.send(encodeDeliveryMessage(jobs)) === 0)
      this.log.warn("jobs claimed for a worker that went away; they are offered again once their claims lapse", { jobs: jobs.length });
  }

  /**
   * For Bun.serve's `fetch`, on requests for HANDOVER_PATH: upgrades one that carries the token
   * (undefined, as Bun asks of an upgraded request), answers anything else with a 4xx.
   */
  upgrade(request: Request, server: Server<Link>): Response | undefined {
    const header = request.headers.get("authorization") ?? "";
    const token = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : "");
    if (!this.tokens.some((known) => known.length === token.length && timingSafeEqual(known, token)))
      return Response.json({ code: "unauthorized", detail: "the hand-over needs the token workers derive from ENCRYPTION_KEY" }, { status: 401 });
    const link: Link = { granted: 0, sent: 0, reserved: 0, open: false };
    if (server.upgrade(request, { data: link })) return undefined;
    return Response.json({ code: "upgrade_required", detail: "the hand-over is a WebSocket connection" }, { status: 426 });
  }

  readonly websocket: WebSocketHandler<Link> = {
    open: (socket) => {
      socket.data.socket = socket;
      socket.data.open = true;
      this.links.push(socket.data);
      this.log.info("a worker connected for the hand-over", { workers: this.links.length });
    },
    message: (socket, text) => {
      const frame = frameOf(text);
      const link = socket.data;
      if (frame === "leaving") this.leave(link, "worker");
      else if (frame === null) socket.close(1003, 'expected {"granted": n} or {"leaving": true}');
      else link.granted = Math.max(link.granted, frame);
    },
    close: (socket) => {
      socket.data.open = false;
      this.links = this.links.filter((link) => link !== socket.data);
      this.log.info("a worker left the hand-over", { workers: this.links.length });
    },
  };

  /**
   * Offers no more room, and closes each connection once the commits under way that reserved room
   * in it have handed their jobs over; workers reconnect, to another API process behind the same
   * address or to this one started again, and get their jobs the usual way meanwhile (a take, or
   * the broker).
   */
  stop(): void {
    for (const link of this.links) this.leave(link, "api");
  }

  private leave(link: Link, who: "worker" | "api"): void {
    link.leaving = who;
    this.links = this.links.filter((l) => l !== link);
    if (link.reserved === 0) finish(link);
  }
}

/** Ends a leaving link: tells the worker nothing more will come, or closes it when this process stops. */
function finish(link: Link): void {
  if (link.leaving === "worker") link.socket?.send(JSON.stringify({ left: true }));
  else link.socket?.close(1001, "stopping");
}

/** A worker's frame: its running grant, or that it is leaving; null for anything else. */
function frameOf(text: string | Buffer): number | "leaving" | null {
  try {
    const frame = JSON.parse(String(text)) as { granted?: unknown; leaving?: unknown };
    if (frame.leaving === true) return "leaving";
    return Number.isSafeInteger(frame.granted) && (frame.granted as number) >= 0 ? (frame.granted as number) : null;
  } catch {
    return null;
  }
}

/** What the worker's side needs of its consumer (postgres/transport.ts `OutboxConsumer`, or `HandedOverJobs`). */
export interface HandoverReceiver {
  /** Jobs it would take now, at most a take's worth. */
  room(): number;
  /** Handles jobs a commit claimed for it, as a message it took. */
  receive(jobs: JobMessage[]): void;
}

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

/**
 * The worker's side: keeps a connection to the API at `url` (QUEUE_HANDOVER_URL), grants room as
 * its consumer's frees, and hands what comes to the consumer. Reconnects while running.
 */
export class HandoverLink {
  private socket: WebSocket | undefined;
  private open = false;
  private stopped = false;
  private failures = 0;
  private retry: Timer | undefined;
  /** Jobs received over the current connection, and the running total last granted on it. */
  private received = 0;
  private lastGranted = 0;
  /** When jobs last came over this connection: commits are under way while it is recent. */
  private receivedAt = 0;
  /** Resolves `stop`'s wait once the API says nothing more will come. */
  private onLeft: (() => void) | undefined;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly receiver: HandoverReceiver,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.connect();
  }

  /**
   * The consumer's room grew or shrank. A new grant goes out once what the API may still send is
   * under half the room: a frame per half a take's worth of settled jobs, not one per job.
   */
  roomChanged(): void {
    if (!this.open || this.stopped) return;
    const granted = this.received + this.receiver.room();
    if (granted > this.lastGranted && (this.lastGranted - this.received) * 2 < granted - this.received) this.grant(granted);
  }

  /**
   * Room granted to the API's commits and not yet used, while they are using it (jobs came over
   * this connection within `withinMs`): the consumer's own take leaves it to them. At the edge of
   * the worker's capacity its room frees a job at a time, and a take, woken by each settled job,
   * would fill it before the next commit came: commits then stop handing over, and their jobs go
   * through the outbox's take instead, about 45 µs of Postgres CPU a job more ("Why the peers go a
   * step further in slow hours" in BENCHMARKS.md).
   */
  heldForCommits(withinMs: number): number {
    if (!this.open || this.stopped || performance.now() - this.receivedAt > withinMs) return 0;
    return Math.max(0, this.lastGranted - this.received);
  }

  /**
   * Stops granting: says it is leaving, takes what commits under way still send (up to `waitMs`),
   * then closes. Call before the consumer stops, so what comes meanwhile is handled.
   */
  async stop(waitMs = 2000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const socket = this.socket;
    if (!socket) return;
    if (this.open) {
      const left = new Promise<void>((resolve) => (this.onLeft = resolve));
      socket.send(JSON.stringify({ leaving: true }));
      await Promise.race([left, Bun.sleep(waitMs)]);
    }
    socket.close(1000, "stopping");
  }

  private grant(granted: number): void {
    this.lastGranted = granted;
    this.socket?.send(JSON.stringify({ granted }));
  }

  private connect(): void {
    const url = this.url.replace(/^http/, "ws").replace(/\/$/, "") + HANDOVER_PATH;
    // Bun's WebSocket takes request headers as a second argument the DOM's type does not know.
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${this.token}` } } as unknown as string[]);
    this.socket = socket;
    socket.onopen = () => {
      this.open = true;
      this.received = 0;
      this.lastGranted = 0;
      this.log.info("connected for the hand-over", { api: this.url });
      this.failures = 0;
      this.grant(this.receiver.room());
    };
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        if (event.data === '{"left":true}') this.onLeft?.();
        return;
      }
      const jobs = event.data instanceof ArrayBuffer ? decodeDeliveryMessage(Buffer.from(event.data))?.jobs : undefined;
      if (!jobs) return;
      this.received += jobs.length;
      this.receivedAt = performance.now();
      this.receiver.receive(jobs);
      this.roomChanged();
    };
    socket.onclose = (event) => {
      this.open = false;
      this.socket = undefined;
      this.onLeft?.();
      if (this.stopped) return;
      this.failures++;
      if (this.failures === 1 || this.failures % 10 === 0)
        this.log.warn("hand-over connection closed; jobs come the usual way meanwhile (a take, or the broker)", { api: this.url, code: event.code, failures: this.failures });
      this.retry = setTimeout(() => this.connect(), Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(this.failures - 1, 6)));
    };
  }
}

/**
 * A worker's handed-over jobs beside another source of work, RabbitMQ's work queues: each batch goes
 * to the handler as a message the transport claimed (the commit did), and the room granted is what
 * WORKER_MAX_IN_FLIGHT leaves beside the jobs in hand from both sources, at most `maxPerCommit`. So
 * a worker busy with the broker's messages gets fewer new jobs straight from the commits, and the
 * rest queue in the broker. (The Postgres transport's consumer counts its takes and hand-overs as one.)
 */
export class HandedOverJobs implements HandoverReceiver {
  private inHand = 0;
  private stopped = false;
  private readonly unsettled = new Set<Promise<void>>();
  /** Told whenever the handed-over jobs in hand change (the link grants room by it). */
  onRoomChange: (() => void) | undefined;

  constructor(
    private readonly handle: JobHandler,
    private readonly limits: { maxInFlight: number; maxPerCommit: number },
    private readonly otherJobsInHand: () => number,
    private readonly log: Logger,
  ) {}

  room(): number {
    if (this.stopped) return 0;
    return Math.max(0, Math.min(this.limits.maxPerCommit, this.limits.maxInFlight - this.inHand - this.otherJobsInHand()));
  }

  receive(jobs: JobMessage[]): void {
    // Stopping: the claims are left to lapse, and the jobs are published again then.
    if (jobs.length === 0 || this.stopped) return;
    instruments().jobsHandedOver.add(jobs.length, { from: "api" });
    this.inHand += jobs.length;
    const work = handleClaimed(this.handle, jobs, this.log, () => {
      this.inHand -= jobs.length;
      this.unsettled.delete(work);
      this.onRoomChange?.();
    });
    this.unsettled.add(work);
  }

  /** Takes no more, then lets the jobs in hand settle (bounded). Call after the link stopped. */
  async stop(drainMs = 10_000): Promise<void> {
    this.stopped = true;
    await Promise.race([Promise.allSettled([...this.unsettled]), Bun.sleep(drainMs)]);
  }
}
