import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/**
 * Which addresses a webhook may not be delivered to unless private networks are allowed: the one
 * definition both the API (when an endpoint is saved) and the worker (before every attempt) use.
 */
export type AddressClass =
  | "unspecified"
  | "loopback"
  | "private"
  | "shared (carrier-grade NAT)"
  | "link-local"
  | "reserved"
  | "documentation"
  | "benchmarking"
  | "multicast"
  | "NAT64"
  | "discard-only"
  | "not an IP address";

const RANGES: [net: string, prefix: number, family: "ipv4" | "ipv6", why: AddressClass][] = [
  ["0.0.0.0", 8, "ipv4", "unspecified"],
  ["10.0.0.0", 8, "ipv4", "private"],
  ["100.64.0.0", 10, "ipv4", "shared (carrier-grade NAT)"],
  ["127.0.0.0", 8, "ipv4", "loopback"],
  ["169.254.0.0", 16, "ipv4", "link-local"],
  ["172.16.0.0", 12, "ipv4", "private"],
  ["192.0.0.0", 24, "ipv4", "reserved"],
  ["192.0.2.0", 24, "ipv4", "documentation"],
  ["192.168.0.0", 16, "ipv4", "private"],
  ["198.18.0.0", 15, "ipv4", "benchmarking"],
  ["198.51.100.0", 24, "ipv4", "documentation"],
  ["203.0.113.0", 24, "ipv4", "documentation"],
  ["224.0.0.0", 4, "ipv4", "multicast"],
  ["240.0.0.0", 4, "ipv4", "reserved"],
  ["::", 128, "ipv6", "unspecified"],
  ["::1", 128, "ipv6", "loopback"],
  ["64:ff9b::", 96, "ipv6", "NAT64"],
  ["100::", 64, "ipv6", "discard-only"],
  ["2001:db8::", 32, "ipv6", "documentation"],
  ["fc00::", 7, "ipv6", "private"],
  ["fe80::", 10, "ipv6", "link-local"],
  ["ff00::", 8, "ipv6", "multicast"],
];
const lists = RANGES.map(([net, prefix, family, why]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, family);
  return { family, why, list };
});

/** The class of a non-public address, or null for a public one. Anything not an IP is refused. */
export function addressClass(address: string): AddressClass | null {
  // A zone (fe80::1%eth0) says which interface, not which address.
  const bare = address.replace(/%.*$/, "");
  const family = isIP(bare);
  if (family === 0) return "not an IP address";
  if (family === 6) {
    // IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged by its IPv4 address. The URL parser's
    // serialisation makes every spelling of it `::ffff:xxxx:xxxx`.
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(new URL(`http://[${bare}]/`).hostname.slice(1, -1));
    if (mapped) {
      const n = (parseInt(mapped[1]!, 16) << 16) | parseInt(mapped[2]!, 16);
      return addressClass([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join("."));
    }
  }
  const kind = family === 4 ? "ipv4" : "ipv6";
  return lists.find((l) => l.family === kind && l.list.check(bare, kind))?.why ?? null;
}

export function isPrivateAddress(address: string): boolean {
  return addressClass(address) !== null;
}

export interface BlockedAddress {
  address: string;
  addressClass: AddressClass;
}

/**
 * The first non-public address a URL hostname stands for, or null when all are public. A literal
 * IP (`127.0.0.1`, `[::1]`) is judged as it is; a name is resolved and EVERY address it resolves
 * to must be public, so a name answering with 10.0.0.1 and a public address is still refused.
 * A failed lookup rejects: what that means is the caller's decision.
 */
export async function findBlockedAddress(hostname: string): Promise<BlockedAddress | null> {
  const host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  const addresses = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  for (const address of addresses) {
    const why = addressClass(address);
    if (why) return { address, addressClass: why };
  }
  return null;
}
