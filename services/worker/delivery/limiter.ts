/**
 * Bounds deliveries in flight, per endpoint and in total, so a slow or dead endpoint holds at most
 * `perEndpoint` slots and never the whole worker.
 *
 * A job that would wait long for its endpoint is not kept waiting: that would hold its AMQP message
 * and, in time, the consumer's whole prefetch window. "Long" is estimated from the endpoint's recent
 * response times: jobs queued × average duration / slots, for endpoints averaging 250 ms or more. A
 * busy but fast endpoint keeps a deep queue; a slow one is cut off after a few jobs. `acquire` answers
 * `defer` then, and the caller reschedules the job in Postgres instead.
 *
 * Waiters queue per endpoint; endpoints that have room but wait for the worker's total capacity
 * queue in `ready`, so a release costs O(1) however many jobs wait.
 */
export interface LimiterOptions {
  total: number;
  perEndpoint: number;
  /** Longest expected wait for an endpoint slot before a job is deferred. */
  maxWaitMs: number;
  /** Told of every change in the number of jobs waiting for a slot (a gauge's +1 / -1). */
  onWaitingChange?: (delta: number) => void;
}

interface Waiter {
  grant: (outcome: "run" | "defer") => void;
  timer: ReturnType<typeof setTimeout>;
}

interface EndpointState {
  active: number;
  waiting: Waiter[];
  /** Moving average of recent attempt durations, ms. */
  averageMs: number;
  inReady: boolean;
}

// Weight of the newest duration in the moving average: reacts within a few dozen attempts.
const SMOOTHING = 0.1;
// A waiter is deferred for sure after this many expected waits (the endpoint slowed down after it queued).
const HARD_WAIT_FACTOR = 5;
// Only an endpoint this slow on average is cut off. A fast endpoint on a loaded machine also builds
// a queue, but deferring its jobs would only add database work exactly when there is none to spare.
const SLOW_ENDPOINT_MS = 250;

export class DeliveryLimiter {
  private active = 0;
  private queued = 0;
  private readonly endpoints = new Map<string, EndpointState>();
  private ready: EndpointState[] = [];

  constructor(private readonly options: LimiterOptions) {}

  get inFlight(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queued;
  }

  acquire(endpointId: string): Promise<"run" | "defer"> {
    const state = this.state(endpointId);
    if (state.waiting.length === 0 && this.canRun(state)) {
      this.take(state);
      return Promise.resolve("run");
    }
    if (this.saturated(state) && state.averageMs >= SLOW_ENDPOINT_MS) {
      const expectedWaitMs = ((state.waiting.length + 1) * state.averageMs) / this.options.perEndpoint;
      if (expectedWaitMs > this.options.maxWaitMs) return Promise.resolve("defer");
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant: resolve,
        timer: setTimeout(() => {
          // Waiting on the worker's total capacity is fair progress; only a stuck endpoint defers.
          if (!this.saturated(state) || state.averageMs < SLOW_ENDPOINT_MS) return;
          const i = state.waiting.indexOf(waiter);
          if (i < 0) return;
          state.waiting.splice(i, 1);
          this.countWaiting(-1);
          resolve("defer");
        }, this.options.maxWaitMs * HARD_WAIT_FACTOR),
      };
      state.waiting.push(waiter);
      this.countWaiting(1);
      this.markReady(state);
    });
  }

  release(endpointId: string, durationMs?: number): void {
    const state = this.state(endpointId);
    this.active--;
    state.active--;
    if (durationMs !== undefined) state.averageMs = state.averageMs === 0 ? durationMs : state.averageMs + SMOOTHING * (durationMs - state.averageMs);
    // The freed endpoint slot goes to this endpoint's next job; freed total capacity to ready endpoints.
    this.grantNext(state);
    while (this.active < this.options.total && this.ready.length > 0) {
      const next = this.ready.shift()!;
      next.inReady = false;
      this.grantNext(next);
      this.markReady(next);
    }
    if (state.active === 0 && state.waiting.length === 0 && this.endpoints.size > 10_000) this.endpoints.delete(endpointId);
  }

  private grantNext(state: EndpointState): void {
    if (state.waiting.length === 0 || !this.canRun(state)) return;
    const waiter = state.waiting.shift()!;
    this.countWaiting(-1);
    clearTimeout(waiter.timer);
    this.take(state);
    waiter.grant("run");
  }

  /** Queues an endpoint that has waiters and room of its own for the next freed total capacity. */
  private markReady(state: EndpointState): void {
    if (!state.inReady && state.waiting.length > 0 && !this.saturated(state)) {
      state.inReady = true;
      this.ready.push(state);
    }
  }

  private state(endpointId: string): EndpointState {
    let state = this.endpoints.get(endpointId);
    if (!state) this.endpoints.set(endpointId, (state = { active: 0, waiting: [], averageMs: 0, inReady: false }));
    return state;
  }

  private saturated(state: EndpointState): boolean {
    return state.active >= this.options.perEndpoint;
  }

  private canRun(state: EndpointState): boolean {
    return this.active < this.options.total && !this.saturated(state);
  }

  private countWaiting(delta: number): void {
    this.queued += delta;
    this.options.onWaitingChange?.(delta);
  }

  private take(state: EndpointState): void {
    this.active++;
    state.active++;
  }
}
