import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadConfig } from "../../core/config/index.ts";
import { BODY_MEMORY_FACTOR } from "../../core/config/schema.ts";
import { hookUrl, startApi, type TestApi, type TestResponse } from "./harness.ts";

/**
 * MAX_BODY_BYTES_IN_FLIGHT bounds the memory of all bodies one API process handles at once, counted
 * as BODY_MEMORY_FACTOR × their bytes: the bound below leaves room for 1 MiB of bodies. Bodies are
 * held open mid-read by streams the test controls, so "at once" does not depend on timing.
 */
const KiB = 1024;
const BOUND = 1024 * KiB * BODY_MEMORY_FACTOR;

let api: TestApi;
beforeAll(async () => {
  api = await startApi({
    env: { MAX_BODY_BYTES_IN_FLIGHT: String(BOUND), MAX_PAYLOAD_BYTES: String(512 * KiB), MAX_BATCH_EVENTS: "10" },
  });
  // A `*` route, so an accepted batch would leave events and jobs behind.
  await api.request("POST", "/endpoints", { body: { url: hookUrl(), eventTypes: ["*"] } });
});
afterAll(async () => {
  await api.close();
});

/** A batch body with one event per size, each carrying a string of that many bytes. */
const batch = (...sizes: number[]) =>
  JSON.stringify({ events: sizes.map((n) => ({ type: "order.paid", data: { s: "x".repeat(n) } })) });

/** About 600 KiB: two of these fit one at a time, not together. */
const HALF_AND_MORE = batch(300 * KiB, 300 * KiB);
/** About 900 KiB: accepted only when (nearly) all of the bound is free. */
const NEARLY_ALL = batch(450 * KiB, 450 * KiB);

const post = (body: string, headers: Record<string, string> = {}) =>
  api.request("POST", "/events/batch", { body, headers: { "content-type": "application/json", ...headers } });

const declared = (body: string) => ({ "content-length": String(Buffer.byteLength(body)) });

interface HeldRequest {
  response: Promise<TestResponse>;
  /** Resolves once the server has read the first `firstBytes` and asked for more. */
  reading: Promise<void>;
  /** Sends the rest of the body. */
  finish(): void;
  /** Breaks the body off, as a client that goes away mid-upload. */
  fail(): void;
}

/**
 * Sends `body` to the batch route in two parts and holds the second back until told. With
 * `declare`, the Content-Length is sent (the server reserves it before reading); without, the body
 * is of unknown length and counted as it streams.
 */
function holdBody(body: string, firstBytes: number, declare: boolean): HeldRequest {
  const bytes = new TextEncoder().encode(body);
  let settle!: (finish: boolean) => void;
  const settled = new Promise<boolean>((resolve) => (settle = resolve));
  let markReading!: () => void;
  const reading = new Promise<void>((resolve) => (markReading = resolve));
  let pulls = 0;
  // A high-water mark of 0: the stream is pulled only when the server reads, so the second pull
  // means the first part has been read and counted.
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (++pulls === 1) return controller.enqueue(bytes.subarray(0, firstBytes));
        markReading();
        if (await settled) {
          controller.enqueue(bytes.subarray(firstBytes));
          controller.close();
        } else controller.error(new Error("client went away"));
      },
    },
    new CountQueuingStrategy({ highWaterMark: 0 }),
  );
  const headers: Record<string, string> = {
    "content-type": "application/json",
    authorization: `Bearer ${api.appKey}`,
    ...(declare ? declared(body) : {}),
  };
  const response = api.app
    .handle(new Request("http://localhost/events/batch", { method: "POST", headers, body: stream }))
    .then(async (res) => {
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined, text };
    });
  // An answer before the read (a refusal) would leave `reading` pending: fail fast instead.
  const answeredFirst = response.then((res) => Promise.reject(new Error(`answered ${res.status} before reading its body`)));
  return {
    response,
    reading: Promise.race([reading, answeredFirst]),
    finish: () => settle(true),
    fail: () => settle(false),
  };
}

function expectOverloaded(res: TestResponse): void {
  expect(res.status).toBe(503);
  expect(res.body).toEqual({ code: "overloaded", detail: expect.stringContaining(String(BOUND)) });
  expect(res.headers.get("retry-after")).toBe("1");
}

/** Once nothing is being read, the whole bound is free again: a body of nearly all of it is accepted. */
async function expectBoundFree(): Promise<void> {
  const res = await post(NEARLY_ALL, declared(NEARLY_ALL));
  expect(res.status).toBe(202);
}

describe("bodies in flight", () => {
  test("a declared body that would pass the bound is refused before reading, writes nothing, and the bound frees after", async () => {
    const first = holdBody(HALF_AND_MORE, 64 * KiB, true);
    await first.reading;
    const before = await api.fingerprint();

    const second = await post(HALF_AND_MORE, declared(HALF_AND_MORE));
    expectOverloaded(second);
    expect(await api.fingerprint()).toBe(before);

    first.finish();
    expect((await first.response).status).toBe(202);
    await expectBoundFree();
  });

  test("a body of unknown length is counted as it streams and cut off at the bound", async () => {
    const first = holdBody(HALF_AND_MORE, 500 * KiB, false);
    await first.reading;
    const before = await api.fingerprint();

    const second = await post(HALF_AND_MORE); // no Content-Length
    expectOverloaded(second);
    expect(await api.fingerprint()).toBe(before);

    first.finish();
    expect((await first.response).status).toBe(202);
    await expectBoundFree();
  });

  for (const declare of [true, false]) {
    test(`a read that fails midway releases its share (${declare ? "declared length" : "unknown length"})`, async () => {
      const before = await api.fingerprint();
      const broken = holdBody(HALF_AND_MORE, 500 * KiB, declare);
      await broken.reading;
      broken.fail();
      const res = await broken.response;
      expect(res.status).toBe(400);
      expect(await api.fingerprint()).toBe(before);
      await expectBoundFree();
    });
  }

  test("a batch larger than the bound is 413, not a 503 no retry could cure", async () => {
    const tooBig = batch(500 * KiB, 500 * KiB, 100 * KiB);
    const declaredRes = await post(tooBig, declared(tooBig));
    expect(declaredRes.status).toBe(413);
    expect(declaredRes.body.code).toBe("payload_too_large");
    const streamed = await post(tooBig);
    expect(streamed.status).toBe(413);
    await expectBoundFree();
  });

  test("config refuses a bound below what one largest body costs, which no single body could then fit", () => {
    expect(() => loadConfig({ MAX_BODY_BYTES_IN_FLIGHT: String(BOUND), MAX_PAYLOAD_BYTES: String(2 * 1024 * KiB) })).toThrow(
      /MAX_BODY_BYTES_IN_FLIGHT: must be at least 10 × MAX_PAYLOAD_BYTES/,
    );
    expect(loadConfig({}).http.MAX_BODY_BYTES_IN_FLIGHT).toBe(64 * 1024 * 1024);
  });
});
