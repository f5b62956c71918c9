import { findBlockedAddress } from "@evently/core/net/addresses.ts";

/**
 * SSRF guard: deliveries go only to public addresses unless private networks are allowed. Which
 * addresses are public is defined once in core (the API checks the same when an endpoint is
 * saved); this is the delivery-time check, which also catches names whose DNS answers changed
 * since. Answers are cached briefly to keep DNS off the hot path.
 */
export type AddressCheck = { ok: true } | { ok: false; errorClass: "dns" | "blocked_address"; detail: string };

const TTL_MS = 30_000;
const cache = new Map<string, { at: number; check: AddressCheck }>();

export async function checkHost(hostname: string): Promise<AddressCheck> {
  const host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  const hit = cache.get(host);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.check;
  let check: AddressCheck;
  try {
    const bad = await findBlockedAddress(host);
    check = bad
      ? {
          ok: false,
          errorClass: "blocked_address",
          detail: `${host} resolves to non-public address ${bad.address} (${bad.addressClass})`,
        }
      : { ok: true };
  } catch (err) {
    check = { ok: false, errorClass: "dns", detail: `cannot resolve ${host}: ${(err as Error).message}` };
  }
  if (cache.size > 10_000) cache.clear();
  cache.set(host, { at: Date.now(), check });
  return check;
}
