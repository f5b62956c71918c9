import { describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { createLogger } from "../../core/log.ts";
import { decodeDeliveryMessage, type JobMessage } from "../../core/queue/messages.ts";
import { HandoverHub } from "../../core/queue/handover.ts";

/**
 * The API's side of the Postgres transport's hand-over (handover.ts), on its own: which connected
 * worker a commit's jobs go to, and what a worker's grants allow. The connection itself, the token
 * and the claims are exercised end to end in e2e/handover.test.ts.
 */

type Socket = ServerWebSocket<any> & { frames: JobMessage[][]; texts: string[]; closed: number | undefined };

function connect(hub: HandoverHub): Socket {
  const fake = {
    data: { granted: 0, sent: 0, reserved: 0, open: false },
    frames: [] as JobMessage[][],
    texts: [] as string[],
    closed: undefined as number | undefined,
    send: (frame: Buffer | string) => {
      if (typeof frame === "string") fake.texts.push(frame);
      else fake.frames.push(decodeDeliveryMessage(frame)!.jobs);
      return frame.length;
    },
    close: (code: number) => {
      fake.closed = code;
    },
  };
  const socket = fake as unknown as Socket;
  hub.websocket.open?.(socket);
  return socket;
}

const grant = (hub: HandoverHub, socket: Socket, granted: number) => hub.websocket.message?.(socket, JSON.stringify({ granted }));

const job = (n: number): JobMessage => ({ jobId: `job_${n}`, eventId: `evt_${n}`, endpointId: "ep_1", attempt: 0, createdAt: 0, expiresAt: null, body: "{}" });

const received = (socket: Socket) => socket.frames.reduce((sum, frame) => sum + frame.length, 0);

describe("the hand-over hub", () => {
  test("commits go to the connected workers in turn, however their grants come back", () => {
    const hub = new HandoverHub(["token"], 10_000, 256, createLogger("error"));
    const workers = [connect(hub), connect(hub)];
    // Each worker grants as HandoverLink does: a running total, renewed once what the hub may
    // still send is under half its room (256), and at once, before the next commit.
    const lastGranted = new Map<Socket, number>();
    for (const w of workers) {
      grant(hub, w, 256);
      lastGranted.set(w, 256);
    }
    for (let n = 0; n < 1000; n++) {
      const reservation = hub.reserve()!;
      expect(reservation.jobs).toBeGreaterThan(0);
      reservation.handOver([job(n)]);
      for (const w of workers) {
        const got = received(w);
        if ((lastGranted.get(w)! - got) * 2 < 256) {
          lastGranted.set(w, got + 256);
          grant(hub, w, got + 256);
        }
      }
    }
    expect(workers.map(received)).toEqual([500, 500]);
  });

  test("a worker without room is skipped; with no room anywhere the commit claims nothing", () => {
    const hub = new HandoverHub(["token"], 10_000, 256, createLogger("error"));
    const [full, roomy] = [connect(hub), connect(hub)];
    grant(hub, roomy, 3);
    const first = hub.reserve()!;
    expect(first.jobs).toBe(3);
    // Reserved room is not offered twice.
    expect(hub.reserve()).toBeNull();
    first.handOver([job(1), job(2)]);
    expect([received(full), received(roomy)]).toEqual([0, 2]);
    // What the commit did not use is free again; a release frees it all.
    const second = hub.reserve()!;
    expect(second.jobs).toBe(1);
    second.release();
    second.handOver([job(3)]); // after a release: nothing is sent
    expect(received(roomy)).toBe(2);
    expect(hub.reserve()!.jobs).toBe(1);
  });

  test("a commit claims at most a take's worth, and a grant never lowers what was granted", () => {
    const hub = new HandoverHub(["token"], 10_000, 4, createLogger("error"));
    const worker = connect(hub);
    grant(hub, worker, 100);
    grant(hub, worker, 10); // a late frame of an earlier total
    const reservation = hub.reserve()!;
    expect(reservation.jobs).toBe(4);
    reservation.release();
  });

  test("a frame that is not a grant closes the connection, and a closed worker gets nothing", () => {
    const hub = new HandoverHub(["token"], 10_000, 256, createLogger("error"));
    const worker = connect(hub);
    for (const frame of ["nope", '{"granted":-1}', '{"granted":1.5}']) {
      worker.closed = undefined;
      hub.websocket.message?.(worker, frame);
      expect(worker.closed as number | undefined).toBe(1003);
    }
    grant(hub, worker, 10);
    hub.websocket.close?.(worker, 1000, "");
    expect(hub.reserve()).toBeNull();
  });

  test("a worker that leaves gets no new room, what commits under way claimed for it, then `left`", () => {
    const hub = new HandoverHub(["token"], 10_000, 256, createLogger("error"));
    const worker = connect(hub);
    grant(hub, worker, 10);
    const underWay = hub.reserve()!;
    hub.websocket.message?.(worker, JSON.stringify({ leaving: true }));
    expect(hub.reserve()).toBeNull();
    expect(worker.texts).toEqual([]);
    underWay.handOver([job(1)]);
    expect(received(worker)).toBe(1);
    expect(worker.texts).toEqual(['{"left":true}']);
    expect(worker.closed).toBeUndefined(); // the worker closes
  });

  test("stopping closes each connection once the commits that reserved room in it have handed over", () => {
    const hub = new HandoverHub(["token"], 10_000, 256, createLogger("error"));
    const [idle, busy] = [connect(hub), connect(hub)];
    grant(hub, idle, 0);
    grant(hub, busy, 10);
    const underWay = hub.reserve()!;
    hub.stop();
    expect(idle.closed as number | undefined).toBe(1001);
    expect(busy.closed).toBeUndefined();
    expect(hub.reserve()).toBeNull();
    underWay.handOver([job(1)]);
    expect(received(busy)).toBe(1);
    expect(busy.closed as number | undefined).toBe(1001);
  });
});
