/**
 * An open-loop producer: events at a steady rate whatever the API's answers take (a slow answer
 * does not slow the stream, as with real producers), each with its own idempotency key. What a
 * refused event does is the scenario's choice: retried with the same key after a pause (the
 * README's advice for 503 and lost connections), or given up.
 */
export interface Answer {
  key: string;
  /** HTTP status; 0: the connection failed; -1: no answer within the request timeout. */
  status: number;
  code: string | null;
  /** When the request was sent and how long its answer took. */
  sentAt: number;
  ms: number;
}

export interface Accepted {
  key: string;
  id: string;
  type: string;
  /** When the request that got the 202 was sent. */
  sentAt: number;
  answeredAt: number;
}

export interface ProducerOptions {
  apiUrl: () => string;
  appKey: string;
  /** Events per second. */
  rate: number;
  durationMs: number;
  /** The event type of the n-th event (one endpoint per type, so one job per event). */
  type: (n: number) => string;
  keyPrefix: string;
  /** Whether to send a refused event again with its key; default: on 503, 429 and failed connections. */
  retryOn?: (answer: Answer) => boolean;
  /** Stop retrying an event after this long (default 60 s). */
  giveUpAfterMs?: number;
  requestTimeoutMs?: number;
}

export interface Production {
  accepted: Accepted[];
  answers: Answer[];
  /** Keys never accepted. */
  givenUp: string[];
  /** Ids answered for one key, when more than one (an idempotency failure). */
  conflictingKeys: string[];
}

const defaultRetry = (a: Answer) => a.status === 503 || a.status === 429 || a.status === 0 || a.status === -1;

export class Producer {
  private readonly accepted: Accepted[] = [];
  private readonly answers: Answer[] = [];
  private readonly givenUp: string[] = [];
  private readonly idsByKey = new Map<string, Set<string>>();
  private readonly inFlight = new Set<Promise<void>>();
  private sent = 0;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(private readonly options: ProducerOptions) {}

  start(): this {
    this.running = this.loop();
    return this;
  }

  /** Stops sending new events (those under retry go on) and waits until every one is settled. */
  async finish(): Promise<Production> {
    await this.running;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    const conflictingKeys = [...this.idsByKey].filter(([, ids]) => ids.size > 1).map(([key]) => key);
    return { accepted: this.accepted, answers: this.answers, givenUp: this.givenUp, conflictingKeys };
  }

  stop(): void {
    this.stopped = true;
  }

  private async loop(): Promise<void> {
    const started = performance.now();
    while (!this.stopped) {
      const elapsed = performance.now() - started;
      if (elapsed >= this.options.durationMs) break;
      const due = Math.floor((elapsed / 1000) * this.options.rate);
      while (this.sent < due) this.track(this.produce(this.sent++));
      await Bun.sleep(5);
    }
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work);
    const done = () => void this.inFlight.delete(work);
    work.then(done, done);
  }

  private async produce(n: number): Promise<void> {
    const key = `${this.options.keyPrefix}-${n}`;
    const type = this.options.type(n);
    const body = JSON.stringify({ type, data: { n, key }, idempotencyKey: key });
    const giveUpAt = Date.now() + (this.options.giveUpAfterMs ?? 60_000);
    const retryOn = this.options.retryOn ?? defaultRetry;
    for (let tries = 0; ; tries++) {
      const sentAt = Date.now();
      const answer = await this.send(key, body, sentAt);
      this.answers.push(answer.answer);
      if (answer.answer.status === 202 && answer.id) {
        this.accepted.push({ key, id: answer.id, type, sentAt, answeredAt: Date.now() });
        let ids = this.idsByKey.get(key);
        if (!ids) this.idsByKey.set(key, (ids = new Set()));
        ids.add(answer.id);
        return;
      }
      if (!retryOn(answer.answer) || Date.now() > giveUpAt) {
        this.givenUp.push(key);
        return;
      }
      await Bun.sleep(Math.min(1000, 100 * 2 ** Math.min(tries, 4)));
    }
  }

  private async send(key: string, body: string, sentAt: number): Promise<{ answer: Answer; id?: string }> {
    const timeoutMs = this.options.requestTimeoutMs ?? 10_000;
    try {
      const res = await fetch(`${this.options.apiUrl()}/events`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.options.appKey}` },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const json = (await res.json().catch(() => null)) as { id?: string; code?: string } | null;
      return { answer: { key, status: res.status, code: json?.code ?? null, sentAt, ms: Date.now() - sentAt }, id: json?.id };
    } catch (err) {
      const timedOut = (err as Error).name === "TimeoutError";
      return { answer: { key, status: timedOut ? -1 : 0, code: (err as Error).name, sentAt, ms: Date.now() - sentAt } };
    }
  }
}
