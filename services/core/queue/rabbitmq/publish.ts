import { SpanStatusCode } from "@opentelemetry/api";
import { encodeDeliveryMessage, type JobMessage } from "../messages.ts";
import { instruments } from "../../telemetry/instruments.ts";
import { SPAN } from "../../telemetry/names.ts";
import { tracer } from "../../telemetry/tracing.ts";
import { parentAndLinks, traceparentOf, tracingEnabled } from "../../telemetry/trace-context.ts";
import type { ConfirmPublisher, OutgoingMessage } from "./publisher.ts";
import { queueIndexFor } from "./topology.ts";

export interface PublishOptions {
  queueCount: number;
  jobsPerMessage: number;
  /** `fast` right after commit, `sweep` from the dispatcher: a label on the metrics. */
  path: "fast" | "sweep";
}

/**
 * Sends jobs to RabbitMQ: groups them by work queue, packs up to `jobsPerMessage` per message and
 * resolves once the broker confirmed every message. Callers clear the jobs' outbox entries only
 * then; if anything fails the entries stay and the sweeper publishes them later (a job published
 * twice is caught by the worker's claim).
 */
export async function publishJobs(publisher: ConfirmPublisher, jobs: JobMessage[], options: PublishOptions): Promise<void> {
  if (jobs.length === 0) return;
  const byQueue = new Map<number, JobMessage[]>();
  for (const job of jobs) {
    const q = queueIndexFor(job.endpointId, options.queueCount);
    let list = byQueue.get(q);
    if (!list) byQueue.set(q, (list = []));
    list.push(job);
  }
  const messages: OutgoingMessage[] = [];
  for (const [queueIndex, list] of byQueue)
    for (let i = 0; i < list.length; i += options.jobsPerMessage)
      messages.push({ queueIndex, content: encodeDeliveryMessage(list.slice(i, i + options.jobsPerMessage)) });

  const m = instruments();
  const started = performance.now();
  // For jobs of traced events, one span for the hand-off: a child of the jobs' trace when they
  // share one, linked to each otherwise; every message carries it in its headers for the consume span.
  const span = tracingEnabled() ? publishSpan(jobs, options.path) : undefined;
  const traceparent = traceparentOf(span);
  if (traceparent) for (const message of messages) message.headers = { traceparent };
  try {
    await publisher.publish(messages);
  } catch (err) {
    m.publishFailures.add(jobs.length, { path: options.path });
    span?.setStatus({ code: SpanStatusCode.ERROR, message: "publish failed" });
    throw err;
  } finally {
    span?.end();
  }
  m.publishDuration.record((performance.now() - started) / 1000, { path: options.path });
  m.jobsPublished.add(jobs.length, { path: options.path });
}

function publishSpan(jobs: JobMessage[], path: PublishOptions["path"]) {
  const place = parentAndLinks(jobs.map((job) => job.traceparent));
  if (!place) return undefined;
  return tracer().startSpan(SPAN.outboxPublish, { links: place.links, attributes: { "evently.jobs": jobs.length, "evently.publish.path": path } }, place.parent);
}
