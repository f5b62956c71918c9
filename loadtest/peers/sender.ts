import { Webhook } from "standardwebhooks";
import type { Delivery, Endpoint } from "./peer.ts";

/**
 * The worker's one task, as a team would write it with the reference `standardwebhooks` package:
 * sign the JSON body with the endpoint's secret, POST it, and throw on anything but a 2xx so the
 * queue's own retry (attempts and backoff) takes over. Nothing is recorded about the attempt.
 *
 * `webhook-id` is the event id and endpoint id together: the same on every retry of the job, as
 * Standard Webhooks asks, and different per endpoint.
 */
const TIMEOUT_MS = 15_000;

export function webhookSender(endpoints: Endpoint[]): (delivery: Delivery) => Promise<void> {
  const byId = new Map(endpoints.map((e) => [e.id, { url: e.url, signer: new Webhook(e.secret) }]));
  return async ({ endpointId, event }) => {
    const endpoint = byId.get(endpointId);
    // The endpoint list is the deployment's: a job for one that is gone cannot succeed on retry.
    if (!endpoint) return;
    const body = JSON.stringify(event);
    const id = `${event.id}.${endpointId}`;
    const now = new Date();
    const res = await fetch(endpoint.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
        "webhook-signature": endpoint.signer.sign(id, now, body),
      },
      body,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    // Read the body so the keep-alive connection is reused.
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${endpoint.url} answered ${res.status}`);
  };
}
