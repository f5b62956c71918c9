import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/**
 * Which addresses a webhook may not be delivered to: the one definition both the API (when an
 * endpoint is saved) and the worker (before every connection) use, through an AddressPolicy
 * (policy.ts) that adds the operator's exceptions.
 */
export type AddressClass =
  | "unspecified"
  | "loopback"
  | "private"
  | "shared (carrier-grade NAT)"
  | "link-local"
  | "cloud metadata"
  | "reserved"
  | "documentation"
  | "benchmarking"
  | "multicast"
  | "broadcast"
  | "NAT64"
  | "discard-only"
  | "not an IP address";

type Family = "ipv4" | "ipv6";

/** First match wins, so the narrow entries come before the ranges that hold them. */
const RANGES: [net: string, prefix: number, family: Family, why: AddressClass][] = [
  // Instance metadata and platform services: a class of their own, so that allowing the range around
  // one (DELIVERY_ALLOWED_CIDRS=169.254.0.0/16) does not open it; see AddressPolicy.
  ["169.254.169.254", 32, "ipv4", "cloud metadata"], // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
  ["169.254.170.2", 32, "ipv4", "cloud metadata"], // AWS ECS task credentials
  ["169.254.170.23", 32, "ipv4", "cloud metadata"], // AWS EKS Pod Identity
  ["169.254.0.23", 32, "ipv4", "cloud metadata"], // Tencent Cloud
  ["100.100.100.200", 32, "ipv4", "cloud metadata"], // Alibaba Cloud
  ["168.63.129.16", 32, "ipv4", "cloud metadata"], // Azure WireServer (a public-looking address)
  ["fd00:ec2::254", 128, "ipv6", "cloud metadata"], // AWS IMDS over IPv6
  ["fd00:ec2::23", 128, "ipv6", "cloud metadata"], // AWS EKS Pod Identity over IPv6
  ["0.0.0.0", 8, "ipv4", "unspecified"],
  ["10.0.0.0", 8, "ipv4", "private"],
  ["100.64.0.0", 10, "ipv4", "shared (carrier-grade NAT)"],
  ["127.0.0.0", 8, "ipv4", "loopback"],
  ["169.254.0.0", 16, "ipv4", "link-local"],
  ["172.16.0.0", 12, "ipv4", "private"],
  ["192.0.0.0", 24, "ipv4", "reserved"],
  ["192.0.2.0", 24, "ipv4", "documentation"],
  ["192.88.99.0", 24, "ipv4", "reserved"], // 6to4 relay anycast, withdrawn
  ["192.168.0.0", 16, "ipv4", "private"],
  ["198.18.0.0", 15, "ipv4", "benchmarking"],
  ["198.51.100.0", 24, "ipv4", "documentation"],
  ["203.0.113.0", 24, "ipv4", "documentation"],
  ["224.0.0.0", 4, "ipv4", "multicast"],
  ["255.255.255.255", 32, "ipv4", "broadcast"],
  ["240.0.0.0", 4, "ipv4", "reserved"],
  ["::", 128, "ipv6", "unspecified"],
  ["::1", 128, "ipv6", "loopback"],
  ["64:ff9b:1::", 48, "ipv6", "NAT64"], // local-use NAT64: where it leads is the network's own choice
  ["100::", 64, "ipv6", "discard-only"],
  ["2001::", 23, "ipv6", "reserved"], // IETF protocol assignments: Teredo, benchmarking, ORCHID
  ["2001:db8::", 32, "ipv6", "documentation"],
  ["3fff::", 20, "ipv6", "documentation"],
  ["fc00::", 7, "ipv6", "private"],
  ["fe80::", 10, "ipv6", "link-local"],
  ["fec0::", 10, "ipv6", "private"], // site-local, deprecated
  ["ff00::", 8, "ipv6", "multicast"],
];
const subnet = (net: string, prefix: number, family: Family) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, family);
  return list;
};
const lists = RANGES.map(([net, prefix, family, why]) => ({ family, why, list: subnet(net, prefix, family) }));

/**
 * IPv6 ranges that carry an IPv4 address which the packets end up at (the kernel, a NAT64
 * translator or a 6to4 relay connects to it): such an address is as public as its IPv4 address.
 * `group` is where the IPv4 address sits, in 16-bit groups.
 */
const EMBEDDING = [
  { list: subnet("::ffff:0:0", 96, "ipv6"), group: 6 }, // IPv4-mapped
  { list: subnet("::ffff:0:0:0", 96, "ipv6"), group: 6 }, // IPv4-translated (SIIT)
  { list: subnet("64:ff9b::", 96, "ipv6"), group: 6 }, // NAT64 well-known prefix
  { list: subnet("2002::", 16, "ipv6"), group: 1 }, // 6to4
  { list: subnet("::", 96, "ipv6"), group: 6 }, // IPv4-compatible, deprecated
];
/** Outside 2000::/3 no IPv6 address is assigned for global unicast. */
const GLOBAL_UNICAST = subnet("2000::", 3, "ipv6");

/** The class of a non-public address, or null for a public one. Anything not an IP is refused. */
export function addressClass(address: string): AddressClass | null {
  // A zone (fe80::1%eth0) says which interface, not which address.
  const bare = address.replace(/%.*$/, "");
  const family = isIP(bare);
  if (family === 0) return "not an IP address";
  const kind = family === 4 ? "ipv4" : "ipv6";
  const listed = lists.find((l) => l.family === kind && l.list.check(bare, kind))?.why ?? null;
  if (family === 4 || listed) return listed;
  const v4 = embeddedIpv4(bare);
  if (v4 !== null) return addressClass(v4);
  return GLOBAL_UNICAST.check(bare, "ipv6") ? null : "reserved";
}

export function isPrivateAddress(address: string): boolean {
  return addressClass(address) !== null;
}

/** The IPv4 address an IPv6 address carries (see EMBEDDING), in any of its spellings, or null. */
export function embeddedIpv4(ipv6: string): string | null {
  const bare = ipv6.replace(/%.*$/, "");
  if (isIP(bare) !== 6) return null;
  const embedding = EMBEDDING.find((e) => e.list.check(bare, "ipv6"));
  if (!embedding) return null;
  const groups = ipv6Groups(bare);
  const [high, low] = [groups[embedding.group]!, groups[embedding.group + 1]!];
  return [high >> 8, high & 255, low >> 8, low & 255].join(".");
}

/** The eight 16-bit groups of an IPv6 address; the URL parser first makes every spelling one. */
function ipv6Groups(ipv6: string): number[] {
  const canonical = new URL(`http://[${ipv6}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.split("::") as [string, string | undefined];
  const split = (part: string | undefined) => (part ? part.split(":") : []);
  const known = [...split(head), ...split(tail)].length;
  const groups = tail === undefined ? split(head) : [...split(head), ...Array(8 - known).fill("0"), ...split(tail)];
  return groups.map((g) => parseInt(g, 16));
}

export interface BlockedAddress {
  address: string;
  addressClass: AddressClass;
}

/**
 * What judges one address: AddressPolicy (policy.ts). Declared here so that this file does not
 * depend on the policy; without one, every non-public address is refused.
 */
export interface AddressJudge {
  /** Every address allowed (DELIVERY_ALLOW_PRIVATE_NETWORKS): no need even to resolve names. */
  readonly allowsAll: boolean;
  /** Why `address` is refused, or null when it may be connected to. */
  refusal(address: string): AddressClass | null;
}

const STRICT: AddressJudge = { allowsAll: false, refusal: addressClass };

/** Resolves a name to every address it stands for. */
export type ResolveName = (name: string) => Promise<string[]>;

const lookupAll: ResolveName = async (name) => (await lookup(name, { all: true })).map((a) => a.address);

/**
 * The addresses a URL hostname stands for: a literal IP (`127.0.0.1`, `[::1]`) as it is;
 * `localhost` and `*.localhost` (with or without the trailing dot) as loopback without asking DNS,
 * which RFC 6761 lets treat them as anything; any other name as `resolve` answers. Give it the
 * parsed URL's `hostname`, which the URL parser has already made canonical (2130706433, 0x7f.1
 * and 0177.0.0.1 are all 127.0.0.1 there). A failed lookup rejects.
 */
export async function hostAddresses(hostname: string, resolve: ResolveName = lookupAll): Promise<string[]> {
  const host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  if (isIP(host)) return [host];
  if (/(^|\.)localhost\.?$/i.test(host)) return ["127.0.0.1", "::1"];
  return resolve(host);
}

/** The first of `addresses` that `judge` refuses, or null when it allows them all. */
export function firstRefused(addresses: string[], judge: AddressJudge = STRICT): BlockedAddress | null {
  for (const address of addresses) {
    const why = judge.refusal(address);
    if (why) return { address, addressClass: why };
  }
  return null;
}

/**
 * The first address a URL hostname stands for that `policy` refuses, or null when all are allowed.
 * EVERY address a name resolves to must be allowed, so a name answering with 10.0.0.1 and a public
 * address is still refused. A failed lookup rejects: what that means is the caller's decision.
 */
export async function findBlockedAddress(hostname: string, policy: AddressJudge = STRICT): Promise<BlockedAddress | null> {
  if (policy.allowsAll) return null;
  return firstRefused(await hostAddresses(hostname), policy);
}
