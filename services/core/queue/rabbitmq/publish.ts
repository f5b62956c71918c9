import { encodeDeliveryMessage, type JobMessage } from "../messages.ts";
import { instruments } from "../../telemetry/instruments.ts";
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
  try {
    await publisher.publish(messages);
  } catch (err) {
    m.publishFailures.add(jobs.length, { path: options.path });
    throw err;
  }
  m.publishDuration.record((performance.now() - started) / 1000, { path: options.path });
  m.jobsPublished.add(jobs.length, { path: options.path });
}
