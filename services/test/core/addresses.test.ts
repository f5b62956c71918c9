import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../core/config/index.ts";
import { addressClass, findBlockedAddress, hostAddresses } from "../../core/net/addresses.ts";
import { AddressPolicy, parseCidrList } from "../../core/net/policy.ts";

/** What the guard is given: the hostname of the URL as the WHATWG URL parser leaves it. */
const hostOf = (url: string) => new URL(url).hostname;
const strict = AddressPolicy.strict;
const policy = (cidrs: string) => new AddressPolicy(false, parseCidrList(cidrs).cidrs);

describe("every spelling of a non-public address is refused", () => {
  // [url, the class it is refused as]; none of these needs DNS.
  const refused: [string, string][] = [
    ["http://127.0.0.1/", "loopback"],
    ["http://2130706433/", "loopback"], // decimal
    ["http://0x7f000001/", "loopback"], // hex
    ["http://0177.0.0.1/", "loopback"], // octal
    ["http://017700000001/", "loopback"],
    ["http://127.1/", "loopback"], // shortened
    ["http://0x7f.1/", "loopback"],
    ["http://127.000.000.001/", "loopback"],
    ["http://127.0.0.1./", "loopback"], // trailing dot
    ["http://%31%32%37.0.0.1/", "loopback"], // percent-encoded
    ["http://１２７.0.0.1/", "loopback"], // full-width digits
    ["http://localhost/", "loopback"],
    ["http://LocalHost./", "loopback"], // mixed case, trailing dot
    ["http://hooks.localhost/", "loopback"],
    ["http://public.example@127.0.0.1/", "loopback"], // userinfo
    ["http://public.example:80@127.0.0.1:8080/", "loopback"],
    ["http://[::1]/", "loopback"],
    ["http://[0:0:0:0:0:0:0:1]/", "loopback"],
    ["http://[::ffff:127.0.0.1]/", "loopback"], // IPv4-mapped
    ["http://[::ffff:7f00:1]/", "loopback"],
    ["http://[0:0:0:0:0:ffff:127.0.0.1]/", "loopback"],
    ["http://[::127.0.0.1]/", "loopback"], // IPv4-compatible
    ["http://[::ffff:0:10.0.0.1]/", "private"], // IPv4-translated
    ["http://[64:ff9b::10.0.0.1]/", "private"], // NAT64
    ["http://[64:ff9b::7f00:1]/", "loopback"],
    ["http://[2002:a00:1::]/", "private"], // 6to4 of 10.0.0.1
    ["http://[2002:7f00:1::1]/", "loopback"],
    ["http://10.1.2.3/", "private"],
    ["http://172.16.0.1/", "private"],
    ["http://192.168.1.1/", "private"],
    ["http://[fd12:3456::1]/", "private"],
    ["http://[fec0::1]/", "private"],
    ["http://169.254.1.1/", "link-local"],
    ["http://[fe80::1]/", "link-local"],
    ["http://100.64.0.1/", "shared (carrier-grade NAT)"],
    ["http://169.254.169.254/latest/meta-data/", "cloud metadata"],
    ["http://[::ffff:a9fe:a9fe]/", "cloud metadata"], // 169.254.169.254, mapped
    ["http://[fd00:ec2::254]/", "cloud metadata"],
    ["http://100.100.100.200/", "cloud metadata"],
    ["http://169.254.170.2/", "cloud metadata"],
    ["http://168.63.129.16/", "cloud metadata"],
    ["http://224.0.0.1/", "multicast"],
    ["http://[ff02::1]/", "multicast"],
    ["http://0.0.0.0/", "unspecified"],
    ["http://0/", "unspecified"],
    ["http://[::]/", "unspecified"],
    ["http://255.255.255.255/", "broadcast"],
    ["http://240.0.0.1/", "reserved"],
    ["http://192.0.2.1/", "documentation"],
    ["http://198.51.100.7/", "documentation"],
    ["http://203.0.113.9/", "documentation"],
    ["http://[2001:db8::1]/", "documentation"],
    ["http://[3fff::1]/", "documentation"],
    ["http://198.18.0.1/", "benchmarking"],
    ["http://[2001::1]/", "reserved"], // Teredo
    ["http://[100::1]/", "discard-only"],
    ["http://[64:ff9b:1::1]/", "NAT64"],
    ["http://[5f00::1]/", "reserved"], // outside global unicast
  ];
  test.each(refused)("%s is refused as %s", async (url, why) => {
    expect(await findBlockedAddress(hostOf(url), strict)).toMatchObject({ addressClass: why });
    // The module's default is the same strict judgement.
    expect(await findBlockedAddress(hostOf(url))).toMatchObject({ addressClass: why });
  });

  const allowed = [
    "http://8.8.8.8/",
    "http://1.1.1.1:8443/",
    "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::8.8.8.8]/",
    "http://[2002:808:808::1]/",
  ];
  test.each(allowed)("%s is public", async (url) => {
    expect(await findBlockedAddress(hostOf(url), strict)).toBeNull();
  });

  test("a name is judged by every address it resolves to", async () => {
    const resolve = async () => ["8.8.8.8", "10.0.0.1"];
    expect(await hostAddresses("mixed.evently.test", resolve)).toEqual(["8.8.8.8", "10.0.0.1"]);
    expect(await hostAddresses("[::1]", resolve)).toEqual(["::1"]);
    // localhost names never reach DNS (RFC 6761), so a resolver cannot make them public.
    expect(await hostAddresses("localhost.", resolve)).toEqual(["127.0.0.1", "::1"]);
    expect(addressClass("example.com")).toBe("not an IP address");
    expect(addressClass("fe80::1%eth0")).toBe("link-local");
  });
});

describe("AddressPolicy", () => {
  test("DELIVERY_ALLOWED_CIDRS opens its ranges, in IPv4 and IPv6, and nothing else", () => {
    const p = policy("127.0.0.0/8, 10.1.0.0/16,fd00:1::/32");
    expect(p.refusal("127.0.0.1")).toBeNull();
    expect(p.refusal("::ffff:127.0.0.1")).toBeNull(); // the same host, IPv4-mapped
    expect(p.refusal("10.1.200.3")).toBeNull();
    expect(p.refusal("fd00:1::5")).toBeNull();
    expect(p.refusal("10.2.0.1")).toBe("private");
    expect(p.refusal("::1")).toBe("loopback");
    expect(p.refusal("fd00:2::5")).toBe("private");
    expect(p.refusal("8.8.8.8")).toBeNull();
    expect(p.refusal("not-an-ip")).toBe("not an IP address");
  });

  test("a cloud metadata address is opened only by naming it alone", () => {
    expect(policy("169.254.0.0/16").refusal("169.254.169.254")).toBe("cloud metadata");
    expect(policy("169.254.0.0/16").refusal("169.254.1.1")).toBeNull();
    expect(policy("fd00::/8").refusal("fd00:ec2::254")).toBe("cloud metadata");
    expect(policy("100.64.0.0/10").refusal("100.100.100.200")).toBe("cloud metadata");
    expect(policy("169.254.169.254/32").refusal("169.254.169.254")).toBeNull();
    expect(policy("169.254.169.254").refusal("169.254.169.254")).toBeNull();
  });

  test("DELIVERY_ALLOW_PRIVATE_NETWORKS=true allows every address without resolving", async () => {
    const all = new AddressPolicy(true, []);
    expect(all.refusal("169.254.169.254")).toBeNull();
    expect(await all.findBlockedAddress("name.that.does.not.resolve.invalid")).toBeNull();
    expect(await policy("127.0.0.0/8").findBlockedAddress("[::1]")).toEqual({ address: "::1", addressClass: "loopback" });
  });

  test("built from config: a list of CIDRs, and a bad one stops startup naming the variable", () => {
    const config = loadConfig({ DELIVERY_ALLOWED_CIDRS: "127.0.0.0/8,10.1.0.0/16,::1/128" });
    const p = AddressPolicy.fromConfig(config.delivery);
    expect(p.allowedCidrs.map((c) => c.text)).toEqual(["127.0.0.0/8", "10.1.0.0/16", "::1/128"]);
    expect(p.allowsAll).toBe(false);
    expect(p.refusal("10.1.0.9")).toBeNull();
    expect(loadConfig({}).delivery.DELIVERY_ALLOWED_CIDRS).toEqual([]);
    expect(AddressPolicy.fromConfig(loadConfig({ DELIVERY_ALLOW_PRIVATE_NETWORKS: "true" }).delivery).allowsAll).toBe(true);
    for (const bad of ["10.0.0.0/33", "10.1/16", "fd00::/129", "example.com/8", "10.0.0.0/8,,nope"]) {
      let error: unknown;
      try {
        loadConfig({ DELIVERY_ALLOWED_CIDRS: bad });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual([expect.stringMatching(/^DELIVERY_ALLOWED_CIDRS: not a CIDR/)]);
    }
  });
});
