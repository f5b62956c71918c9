import { BlockList, isIP } from "node:net";
import { addressClass, embeddedIpv4, findBlockedAddress, type AddressClass, type AddressJudge, type BlockedAddress } from "./addresses.ts";

/** One range of DELIVERY_ALLOWED_CIDRS, as written and as parsed. */
export interface Cidr {
  text: string;
  network: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** `10.1.0.0/16`, `fd00::/8`, or a lone address (a /32 or /128); null when it is none of these. */
export function parseCidr(text: string): Cidr | null {
  const match = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!match) return null;
  const network = match[1]!.replace(/^\[(.*)\]$/, "$1");
  const version = isIP(network);
  if (version === 0) return null;
  const bits = version === 4 ? 32 : 128;
  const prefix = match[2] === undefined ? bits : Number(match[2]);
  if (prefix > bits) return null;
  return { text: text.trim(), network, prefix, family: version === 4 ? "ipv4" : "ipv6" };
}

/** A comma-separated list of CIDRs, and the entries that are not one (for the config's message). */
export function parseCidrList(spec: string): { cidrs: Cidr[]; invalid: string[] } {
  const cidrs: Cidr[] = [];
  const invalid: string[] = [];
  for (const part of spec.split(",").map((p) => p.trim()).filter(Boolean)) {
    const cidr = parseCidr(part);
    if (cidr) cidrs.push(cidr);
    else invalid.push(part);
  }
  return { cidrs, invalid };
}

/** The config an AddressPolicy is built from (the delivery concern's two variables). */
export interface AddressPolicyConfig {
  DELIVERY_ALLOW_PRIVATE_NETWORKS: boolean;
  DELIVERY_ALLOWED_CIDRS: readonly Cidr[];
}

/**
 * Where deliveries may go, built once from config and used by both the API (an endpoint's url when
 * saved) and the worker (every connection): public addresses always; non-public ones only inside
 * DELIVERY_ALLOWED_CIDRS; everything with DELIVERY_ALLOW_PRIVATE_NETWORKS=true, the blunt switch
 * that turns the SSRF guard off. A cloud metadata address (169.254.169.254, fd00:ec2::254, ...)
 * is opened only by naming it alone (`169.254.169.254/32`): allowing the link-local or private
 * range around it is meant for receivers, not for the machine's credentials.
 */
export class AddressPolicy implements AddressJudge {
  /** Every non-public address refused: the default configuration. */
  static readonly strict = new AddressPolicy(false, []);

  private readonly ranges = new BlockList();
  private readonly exact = new BlockList();

  constructor(
    readonly allowsAll: boolean,
    readonly allowedCidrs: readonly Cidr[],
  ) {
    for (const c of allowedCidrs) {
      this.ranges.addSubnet(c.network, c.prefix, c.family);
      if (c.prefix === (c.family === "ipv4" ? 32 : 128)) this.exact.addAddress(c.network, c.family);
    }
  }

  static fromConfig(config: AddressPolicyConfig): AddressPolicy {
    return new AddressPolicy(config.DELIVERY_ALLOW_PRIVATE_NETWORKS, config.DELIVERY_ALLOWED_CIDRS);
  }

  refusal(address: string): AddressClass | null {
    if (this.allowsAll) return null;
    const why = addressClass(address);
    if (why === null || why === "not an IP address") return why;
    return covers(why === "cloud metadata" ? this.exact : this.ranges, address) ? null : why;
  }

  /**
   * The API's save-time check: the first address `hostname` stands for that this policy refuses,
   * or null. A literal is judged as it is, a name by every address DNS gives it; a failed lookup
   * rejects (the caller decides what that means).
   */
  findBlockedAddress(hostname: string): Promise<BlockedAddress | null> {
    return findBlockedAddress(hostname, this);
  }
}

/** An IPv6 address carrying an IPv4 one (::ffff:10.0.0.1, 64:ff9b::a00:1) leads there: either matches. */
function covers(list: BlockList, address: string): boolean {
  const bare = address.replace(/%.*$/, "");
  const v4 = isIP(bare) === 6 ? embeddedIpv4(bare) : null;
  return list.check(bare, isIP(bare) === 4 ? "ipv4" : "ipv6") || (v4 !== null && list.check(v4, "ipv4"));
}
