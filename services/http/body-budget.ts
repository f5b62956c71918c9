import { BODY_MEMORY_FACTOR } from "@evently/core/config/schema.ts";
import { OverloadedError } from "@evently/core/errors.ts";
import type { MemoryGuard } from "@evently/core/memory-guard.ts";

/**
 * The memory request bodies take in one process at once, held to MAX_BODY_BYTES_IN_FLIGHT: each body
 * counts BODY_MEMORY_FACTOR × its bytes, what handling it costs beyond the bytes themselves. A
 * route's body limit bounds one request; this bounds their sum, so many large bodies arriving
 * together cannot take the process's memory with them. One budget per app (createApp makes it).
 *
 * What bodies leave behind is not counted here: the process's memory guard (core/memory-guard.ts),
 * when given, collects it before a body's first byte is taken while the RSS is above its target.
 *
 * mount.ts opens a share per request and releases it once the handler has answered, whatever the
 * outcome; readJsonBody (body.ts) takes the declared Content-Length from it before reading a byte
 * (or each chunk as it arrives when no length is declared).
 */
export class BodyBudget {
  #inUse = 0;

  constructor(
    readonly limitBytes: number,
    private readonly memory?: MemoryGuard,
  ) {}

  /** What open shares hold: BODY_MEMORY_FACTOR × the bytes of their bodies. */
  get inUseBytes(): number {
    return this.#inUse;
  }

  /** A request's share, empty until it takes bytes. */
  share(): BodyShare {
    let held = 0;
    return {
      take: (bytes) => {
        // Once per body, before its first byte: a share holding nothing has not started reading.
        if (held === 0) this.memory?.beforeWork();
        const cost = bytes * BODY_MEMORY_FACTOR;
        if (this.#inUse + cost > this.limitBytes) throw new OverloadedError(this.limitBytes);
        this.#inUse += cost;
        held += cost;
      },
      release: () => {
        this.#inUse -= held;
        held = 0;
      },
    };
  }
}

export interface BodyShare {
  /** Adds `bytes` to the share, or throws OverloadedError and takes nothing when the budget has no room. */
  take(bytes: number): void;
  /** Gives back everything the share took; calling it again gives back nothing more. */
  release(): void;
}
