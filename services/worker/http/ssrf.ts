import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/**
 * SSRF guard: deliveries go only to public addresses unless private networks are allowed.
 * Every address a host resolves to must be public, so a name that resolves to 10.0.0.1 and a
 * public address is still refused. Answers are cached briefly to keep DNS off the hot path.
 */
const blocked = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16],
  ["172.16.0.0", 12], ["192.0.0.0", 24], ["192.0.2.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15],
  ["198.51.100.0", 24], ["203.0.113.0", 24], ["224.0.0.0", 4], ["240.0.0.0", 4],
] as const) blocked.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of [
  ["::", 128], ["::1", 128], ["64:ff9b::", 96], ["100::", 64], ["2001:db8::", 32],
  ["fc00::", 7], ["fe80::", 10], ["ff00::", 8],
] as const) blocked.addSubnet(net, prefix, "ipv6");

export function isPrivateAddress(address: string): boolean {
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged by its IPv4 address; a BlockList range for it
  // would match every IPv4 address.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isPrivateAddress(mapped[1]!);
  const family = isIP(address);
  if (family === 0) return true;
  return blocked.check(address, family === 4 ? "ipv4" : "ipv6");
}

export type AddressCheck = { ok: true } | { ok: false; errorClass: "dns" | "blocked_address"; detail: string };

const TTL_MS = 30_000;
const cache = new Map<string, { at: number; check: AddressCheck }>();

export async function checkHost(hostname: string): Promise<AddressCheck> {
  const host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  const hit = cache.get(host);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.check;
  let check: AddressCheck;
  try {
    const addresses = isIP(host) ? [{ address: host }] : await lookup(host, { all: true });
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    check = bad
      ? { ok: false, errorClass: "blocked_address", detail: `${host} resolves to non-public address ${bad.address}` }
      : { ok: true };
  } catch (err) {
    check = { ok: false, errorClass: "dns", detail: `cannot resolve ${host}: ${(err as Error).message}` };
  }
  if (cache.size > 10_000) cache.clear();
  cache.set(host, { at: Date.now(), check });
  return check;
}
