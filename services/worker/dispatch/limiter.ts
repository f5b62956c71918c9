/**
 * Bounds deliveries in flight, per endpoint and in total, so a slow or dead endpoint holds at most
 * `perEndpoint` slots and never the whole worker.
 *
 * A job that would wait long for its endpoint is not kept waiting: that would hold its AMQP message
 * and, in time, the consumer's whole prefetch window. "Long" is estimated from the endpoint's recent
 * response times: jobs queued × average duration / slots. A busy but fast endpoint keeps a deep
 * queue (thousands of jobs at a few ms each); a slow one is cut off after a few. `acquire` answers
 * `defer` then, and the caller reschedules the job in Postgres instead.
 */
export interface LimiterOptions {
  total: number;
  perEndpoint: number;
  /** Longest expected wait for an endpoint slot before a job is deferred. */
  maxWaitMs: number;
}

interface Waiter {
  endpointId: string;
  grant: (outcome: "run" | "defer") => void;
  timer: ReturnType<typeof setTimeout>;
}

interface EndpointState {
  active: number;
  waiting: Waiter[];
  /** Moving average of recent attempt durations, ms. */
  averageMs: number;
}

// Weight of the newest duration in the moving average: reacts within a few dozen attempts.
const SMOOTHING = 0.1;
// A waiter is deferred for sure after this many expected waits (the endpoint slowed down after it queued).
const HARD_WAIT_FACTOR = 5;

export class DeliveryLimiter {
  private active = 0;
  private readonly endpoints = new Map<string, EndpointState>();
  private readonly globalQueue: Waiter[] = [];

  constructor(private readonly options: LimiterOptions) {}

  get inFlight(): number {
    return this.active;
  }

  get waiting(): number {
    return this.globalQueue.length;
  }

  acquire(endpointId: string): Promise<"run" | "defer"> {
    const state = this.state(endpointId);
    if (this.canRun(state)) {
      this.take(state);
      return Promise.resolve("run");
    }
    if (this.saturated(state)) {
      const expectedWaitMs = ((state.waiting.length + 1) * state.averageMs) / this.options.perEndpoint;
      if (expectedWaitMs > this.options.maxWaitMs) return Promise.resolve("defer");
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        endpointId,
        grant: resolve,
        timer: setTimeout(() => {
          // Waiting on the worker's total capacity is fair progress; only a stuck endpoint defers.
          if (!this.saturated(state)) return;
          this.remove(waiter);
          resolve("defer");
        }, this.options.maxWaitMs * HARD_WAIT_FACTOR),
      };
      state.waiting.push(waiter);
      this.globalQueue.push(waiter);
    });
  }

  release(endpointId: string, durationMs: number): void {
    const state = this.state(endpointId);
    this.active--;
    state.active--;
    state.averageMs = state.averageMs === 0 ? durationMs : state.averageMs + SMOOTHING * (durationMs - state.averageMs);
    this.wake();
  }

  private state(endpointId: string): EndpointState {
    let state = this.endpoints.get(endpointId);
    if (!state) {
      if (this.endpoints.size > 100_000) this.forgetIdle();
      this.endpoints.set(endpointId, (state = { active: 0, waiting: [], averageMs: 0 }));
    }
    return state;
  }

  private saturated(state: EndpointState): boolean {
    return state.active >= this.options.perEndpoint;
  }

  private canRun(state: EndpointState): boolean {
    return this.active < this.options.total && !this.saturated(state);
  }

  private take(state: EndpointState): void {
    this.active++;
    state.active++;
  }

  /** Grants freed slots to the oldest waiters whose endpoint has room. */
  private wake(): void {
    for (let i = 0; i < this.globalQueue.length && this.active < this.options.total; ) {
      const waiter = this.globalQueue[i]!;
      const state = this.state(waiter.endpointId);
      if (this.saturated(state)) {
        i++;
        continue;
      }
      this.remove(waiter);
      clearTimeout(waiter.timer);
      this.take(state);
      waiter.grant("run");
    }
  }

  private remove(waiter: Waiter): void {
    const g = this.globalQueue.indexOf(waiter);
    if (g >= 0) this.globalQueue.splice(g, 1);
    const list = this.state(waiter.endpointId).waiting;
    const i = list.indexOf(waiter);
    if (i >= 0) list.splice(i, 1);
  }

  private forgetIdle(): void {
    for (const [id, state] of this.endpoints) if (state.active === 0 && state.waiting.length === 0) this.endpoints.delete(id);
  }
}
