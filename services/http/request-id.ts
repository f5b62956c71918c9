import { randomUUID } from "node:crypto";
import { Elysia } from "elysia";

export const REQUEST_ID_HEADER = "x-request-id";

// A caller's id is kept (so a proxy's id follows the request through our logs) only when it is
// short and plain; anything else could forge log lines or bloat them, and is replaced.
const ACCEPTABLE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Echoes `x-request-id` on every response (errors too), minting one when the caller sent none. */
export function requestIdPlugin() {
  return new Elysia({ name: "evently.request-id" }).onRequest(({ request, set }) => {
    const given = request.headers.get(REQUEST_ID_HEADER);
    set.headers[REQUEST_ID_HEADER] = given && ACCEPTABLE_ID.test(given) ? given : randomUUID();
  });
}
