import { lookup } from "node:dns/promises";
import { firstRefused, hostAddresses } from "@evently/core/net/addresses.ts";
import { AddressPolicy } from "@evently/core/net/policy.ts";

/**
 * SSRF guard: deliveries go only to addresses the AddressPolicy allows (core/net/policy.ts, the
 * same policy the API applies when an endpoint is saved). The guard resolves a name once, judges
 * EVERY address it got, and hands the send stage the one address to connect to, so a DNS answer
 * that changes between the check and the connection (rebinding) cannot lead anywhere unchecked:
 * nothing else resolves the name. Answers are kept briefly to keep DNS off the hot path.
 */

/** The send stage's DNS: every address a name resolves to. Tests answer as they like. */
export interface Resolver {
  resolve(name: string): Promise<string[]>;
}

export const systemResolver: Resolver = {
  resolve: async (name) => (await lookup(name, { all: true })).map((a) => a.address),
};

/**
 * Where one attempt may connect. `address` is the only address it may use, or null when the guard
 * is off (DELIVERY_ALLOW_PRIVATE_NETWORKS=true): then fetch resolves the name as usual.
 */
export type Destination =
  | { ok: true; address: string | null }
  | { ok: false; errorClass: "dns" | "blocked_address"; detail: string };

export interface GuardOptions {
  resolver?: Resolver;
  /** How long an answer is kept; a failed lookup is kept at most `failureTtlMs`. */
  ttlMs?: number;
  failureTtlMs?: number;
}

const MAX_CACHED = 10_000;
const GUARD_OFF: Promise<Destination> = Promise.resolve({ ok: true, address: null });

export class SsrfGuard {
  private readonly cache = new Map<string, { until: number; answer: Promise<Destination> }>();
  private readonly resolver: Resolver;
  private readonly ttlMs: number;
  private readonly failureTtlMs: number;

  constructor(
    private readonly policy: AddressPolicy,
    options: GuardOptions = {},
  ) {
    this.resolver = options.resolver ?? systemResolver;
    this.ttlMs = options.ttlMs ?? 30_000;
    this.failureTtlMs = options.failureTtlMs ?? 5000;
  }

  /**
   * The address an attempt to `hostname` (a parsed URL's) connects to, or why it may not. Callers
   * asking while a lookup is under way share it, so a burst to a new host costs one lookup.
   */
  destination(hostname: string): Promise<Destination> {
    if (this.policy.allowsAll) return GUARD_OFF;
    const now = Date.now();
    const hit = this.cache.get(hostname);
    if (hit && hit.until > now) return hit.answer;
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
    const entry = { until: now + this.ttlMs, answer: this.judge(hostname) };
    this.cache.set(hostname, entry);
    // DNS being set up right now should not wait out a whole TTL.
    void entry.answer.then((d) => {
      if (!d.ok && d.errorClass === "dns") entry.until = Math.min(entry.until, Date.now() + this.failureTtlMs);
    });
    return entry.answer;
  }

  private async judge(hostname: string): Promise<Destination> {
    let addresses: string[];
    try {
      addresses = await hostAddresses(hostname, (name) => this.resolver.resolve(name));
    } catch (err) {
      return { ok: false, errorClass: "dns", detail: `cannot resolve ${hostname}: ${(err as Error).message}` };
    }
    if (addresses.length === 0) return { ok: false, errorClass: "dns", detail: `${hostname} has no address` };
    const bad = firstRefused(addresses, this.policy);
    if (bad) {
      const literal = addresses.length === 1 && hostname.replace(/^\[|\]$/g, "") === bad.address;
      const where = literal ? bad.address : `${hostname} resolves to ${bad.address}, which`;
      return { ok: false, errorClass: "blocked_address", detail: `${where} is a non-public address (${bad.addressClass})` };
    }
    return { ok: true, address: preferred(addresses) };
  }
}

/**
 * The first IPv4 address, else the first: one address is all a pinned request can try, and many
 * containers have no IPv6 route, where fetch by name would have fallen back to IPv4 by itself.
 */
function preferred(addresses: string[]): string {
  return addresses.find((a) => !a.includes(":")) ?? addresses[0]!;
}

const strictGuard = new SsrfGuard(AddressPolicy.strict);

/** The default policy's verdict on a host (every non-public address refused). */
export const checkHost = (hostname: string): Promise<Destination> => strictGuard.destination(hostname);
