import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { createEndpoint, type Context } from "../context.ts";
import { pollUntil } from "../probe.ts";
import { REDIRECT_PATH } from "../receivers.ts";

const GROUP = "ssrf";

/**
 * Endpoint URLs that lead somewhere other than the one allowed address (127.0.0.1, the real
 * receiver), in every spelling the URL parser turns into an address. Those aimed at loopback name
 * the receivers' port and a path under /ssrf/, and are given a route: should one be saved and
 * delivered, the hit lands on a decoy (127.0.0.2, [::1]) or on /ssrf/ of the real receiver (0.0.0.0
 * connects to the local host), and the suite fails. Those aimed beyond loopback get no route, so no
 * event can send anything there even if the API wrongly saved them; they are deleted at once.
 */
interface Target {
  name: string;
  url: string;
  /** It would connect to this machine: give it a route so a bypass shows up as a decoy hit. */
  loopback: boolean;
  /** The URL does not even parse as an http(s) URL with a host: a plain 422 on `url`. */
  invalid?: boolean;
  /** Sent as a body with two `url` keys, this one first, the target's last. */
  duplicateOf?: string;
}

function targets(port: number): Target[] {
  const p = port;
  const lo = (name: string, host: string, path = name.replace(/[^a-z0-9]+/gi, "-")): Target => ({
    name,
    url: `http://${host}:${p}/ssrf/${path}`,
    loopback: true,
  });
  const far = (name: string, url: string): Target => ({ name, url, loopback: false });
  return [
    lo("127.0.0.2", "127.0.0.2"),
    lo("127.0.0.2 as decimal", "2130706434"),
    lo("127.0.0.2 as hex", "0x7f000002"),
    lo("127.0.0.2 as dotted hex", "0x7f.0x0.0x0.0x2"),
    lo("127.0.0.2 as octal", "0177.0.0.2"),
    lo("127.0.0.2 as padded octal", "0177.0000.0000.0002"),
    lo("127.0.0.2 with leading zeros", "127.000.000.002"),
    lo("127.0.0.2 in three parts", "127.0.2"),
    lo("127.0.0.2 in two parts", "127.2"),
    lo("127.0.0.2 as hex+octal mix", "0x7f.0.0.02"),
    lo("127.0.0.2 with a trailing dot", "127.0.0.2."),
    lo("127.0.0.2 in fullwidth digits (IDNA)", "\uFF11\uFF12\uFF17.\uFF10.\uFF10.\uFF12", "fullwidth"),
    lo("127.0.0.2 with ideographic full stops (IDNA)", "127\u30020\u30020\u30022", "ideographic-dots"),
    lo("127.0.0.2 percent-encoded", "%31%32%37.%30.%30.%32", "percent-encoded"),
    lo("127.0.0.2 behind userinfo 127.0.0.1@", "127.0.0.1@127.0.0.2", "userinfo"),
    lo("127.0.0.2 behind userinfo with a port", `127.0.0.1:${p}@127.0.0.2`, "userinfo-port"),
    lo("127.0.0.2 behind userinfo with a fake host", `127.0.0.1%2F@127.0.0.2`, "userinfo-encoded-slash"),
    { name: "127.0.0.2 with 127.0.0.1 in the fragment", url: `http://127.0.0.2:${p}/ssrf/fragment#@127.0.0.1:${p}/ok`, loopback: true },
    { name: "127.0.0.2 over https", url: `https://127.0.0.2:${p}/ssrf/https`, loopback: true },
    // JSON.parse keeps the last of two equal keys; the check must judge the same one.
    { name: "a duplicate url key, 127.0.0.2 last", url: `http://127.0.0.2:${p}/ssrf/duplicate-key`, loopback: true, duplicateOf: `http://127.0.0.1:${p}/ok/duplicate-key` },
    lo("[::1]", "[::1]"),
    lo("[::1] in full", "[0:0:0:0:0:0:0:1]", "ipv6-full"),
    lo("[::1] with leading zeros", "[0000::0001]", "ipv6-zeros"),
    lo("[::ffff:127.0.0.2] (IPv4-mapped)", "[::ffff:127.0.0.2]", "mapped-dotted"),
    lo("[::ffff:7f00:2] (IPv4-mapped, hex)", "[::ffff:7f00:2]", "mapped-hex"),
    lo("[0:0:0:0:0:ffff:7f00:2] (IPv4-mapped, full)", "[0:0:0:0:0:ffff:7f00:2]", "mapped-full"),
    lo("[::127.0.0.2] (IPv4-compatible)", "[::127.0.0.2]", "compatible"),
    lo("[::] (unspecified, connects to ::1)", "[::]", "ipv6-unspecified"),
    lo("localhost", "localhost"),
    lo("localhost.", "localhost."),
    lo("LOCALHOST", "LOCALHOST", "localhost-upper"),
    lo("a subdomain of localhost", "evil.localhost"),
    lo("0.0.0.0 (connects to the local host)", "0.0.0.0"),
    lo("0 (0.0.0.0)", "0", "zero"),
    lo("0x0 (0.0.0.0)", "0x0", "zero-hex"),
    lo("0.0.0.0 in two parts", "0.0"),
    far("169.254.169.254 (cloud metadata)", "http://169.254.169.254/latest/meta-data/"),
    far("169.254.169.254 as decimal", "http://2852039166/latest/meta-data/"),
    far("169.254.169.254 as hex", "http://0xa9fea9fe/latest/meta-data/"),
    far("169.254.169.254 as IPv4-mapped IPv6", "http://[::ffff:a9fe:a9fe]/latest/meta-data/"),
    far("fd00:ec2::254 (AWS metadata over IPv6)", "http://[fd00:ec2::254]/latest/meta-data/"),
    far("169.254.170.2 (ECS credentials)", "http://169.254.170.2/v2/credentials"),
    far("100.100.100.200 (Alibaba metadata)", "http://100.100.100.200/latest/meta-data/"),
    far("10.0.0.1", "http://10.0.0.1/"),
    far("10.0.0.1 as decimal", "http://167772161/"),
    far("172.16.0.1", "http://172.16.0.1/"),
    far("192.168.1.1", "http://192.168.1.1/"),
    far("192.168.1.1 as IPv4-mapped IPv6", "http://[::ffff:c0a8:101]/"),
    far("100.64.0.1 (carrier-grade NAT)", "http://100.64.0.1/"),
    far("169.254.1.1 (link-local)", "http://169.254.1.1/"),
    far("[fe80::1] (link-local)", "http://[fe80::1]/"),
    far("[fd00::1] (unique local)", "http://[fd00::1]/"),
    far("[64:ff9b::a00:1] (NAT64 of 10.0.0.1)", "http://[64:ff9b::a00:1]/"),
    far("[2002:a00:1::] (6to4 of 10.0.0.1)", "http://[2002:a00:1::]/"),
    far("224.0.0.1 (multicast)", "http://224.0.0.1/"),
    far("255.255.255.255 (broadcast)", "http://255.255.255.255/"),
    far("192.0.2.1 (documentation)", "http://192.0.2.1/"),
    far("198.18.0.1 (benchmarking)", "http://198.18.0.1/"),
    { name: "[::1%25lo] (zone id)", url: `http://[::1%25lo]:${p}/ssrf/zone`, loopback: true, invalid: true },
    { name: "gopher:// to 127.0.0.2", url: `gopher://127.0.0.2:${p}/_ssrf`, loopback: true, invalid: true },
    { name: "file:///etc/passwd", url: "file:///etc/passwd", loopback: false, invalid: true },
    { name: "127.0.0.2 with a tab in the host", url: `http://127.0.0.2\t:${p}/ssrf/tab`, loopback: true, invalid: true },
    { name: "127.0.0.2 with a newline in the host", url: `http://127.0.0.2\n:${p}/ssrf/newline`, loopback: true, invalid: true },
  ];
}

/**
 * Names /etc/hosts maps to an address other than 127.0.0.1 (ip6-localhost, a container's own
 * hostname on its bridge address): the save-time check's path through name resolution, with no
 * DNS query leaving the machine. Names it maps to 127.0.0.1 alone lead to the allowed address, and
 * `localhost` is covered above.
 */
function hostsFileTargets(port: number): Target[] {
  let text = "";
  try {
    text = readFileSync("/etc/hosts", "utf8");
  } catch {
    return [];
  }
  const byName = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    if (!address || isIP(address) === 0) continue;
    for (const name of names) byName.set(name, [...(byName.get(name) ?? []), address]);
  }
  return [...byName]
    .filter(([name, addresses]) => !/(^|\.)localhost\.?$/i.test(name) && addresses.some((a) => a !== "127.0.0.1"))
    .slice(0, 5)
    .map(([name, addresses]) => {
      const loopback = addresses.every((a) => a.startsWith("127.") || a === "::1");
      return {
        name: `${name} (/etc/hosts: ${addresses.join(", ")})`,
        url: loopback ? `http://${name}:${port}/ssrf/hosts-${name}` : `http://${name}/`,
        loopback,
      };
    });
}

export const PROBE_TYPE = "abuse.ssrf.probe";

export async function ssrfCases(ctx: Context): Promise<void> {
  const { suite, a, receivers } = ctx;
  const saved: string[] = [];
  const fromHosts = hostsFileTargets(receivers.port);
  if (fromHosts.length === 0) suite.note(GROUP, "no /etc/hosts name leads to an address other than 127.0.0.1 here: names are covered by localhost and its variants only (no DNS query is made)");
  const all = [...targets(receivers.port), ...fromHosts];

  // Save time: every spelling, at create.
  for (const t of all) {
    const fields = { url: t.url, ...(t.loopback ? { eventTypes: [PROBE_TYPE] } : {}) };
    const body = t.duplicateOf ? `{"url":${JSON.stringify(t.duplicateOf)},${JSON.stringify(fields).slice(1)}` : fields;
    const res = await suite.refuse(
      GROUP,
      `create: ${t.name}`,
      { method: "POST", path: "/endpoints", key: a.key, body, bodyNote: typeof body === "string" ? body : JSON.stringify(body) },
      t.invalid ? { status: 422, field: "url" } : { status: 422, code: "blocked_address", field: "url" },
    );
    if (res.status === 201) {
      if (t.loopback) saved.push(res.json.id);
      else await suite.send({ method: "DELETE", path: `/endpoints/${res.json.id}`, key: a.key });
    }
  }

  // And on update: an endpoint saved with the allowed address, moved to each loopback spelling.
  const movable = await createEndpoint(ctx, a.key, { url: `${receivers.url}/ok/patch-target` });
  for (const t of all.filter((t) => t.loopback && !t.invalid)) {
    await suite.refuse(
      GROUP,
      `update: ${t.name}`,
      { method: "PATCH", path: `/endpoints/${movable}`, key: a.key, body: { url: t.url } },
      { status: 422, code: "blocked_address", field: "url" },
    );
  }
  const after = await suite.send({ method: "GET", path: `/endpoints/${movable}`, key: a.key });
  suite.control(GROUP, "the endpoint refused every move still points at 127.0.0.1", after.json?.url === `${receivers.url}/ok/patch-target`, `url is ${after.json?.url}`);

  // A delivery of the probe type: the control endpoint (127.0.0.1) must get it, the decoys nothing.
  const control = await createEndpoint(ctx, a.key, { url: `${receivers.url}/ok/ssrf-control`, eventTypes: [PROBE_TYPE] });
  const sent = await suite.send({ method: "POST", path: "/events", key: a.key, body: { type: PROBE_TYPE, data: { probe: true } } });
  const delivered = await pollUntil(async () => (receivers.received.some((h) => h.path === "/ok/ssrf-control") ? true : undefined), 10_000);
  suite.control(
    GROUP,
    "an event routed to the allowed 127.0.0.1 is delivered (the worker works, so quiet decoys mean something)",
    sent.status === 202 && delivered === true,
    `POST /events ${sent.status}; ${delivered ? "delivered" : "not delivered within 10 s"}; endpoint ${control}; ${saved.length} hostile endpoints were saved`,
  );

  await deliveryTimeCases(ctx);
  await redirectCase(ctx);
}

/**
 * The worker's own check, the one that matters once DNS can change after an endpoint was saved: an
 * endpoint saved with the allowed address is moved in the database (as a DNS change would move it)
 * to a blocked one, then gets an event. The job must fail at once, attempt 1, `blocked_address`,
 * and nothing may reach the decoys.
 */
async function deliveryTimeCases(ctx: Context): Promise<void> {
  const { suite, a, receivers, sql } = ctx;
  const p = receivers.port;
  const moves = [
    ["127.0.0.2", `http://127.0.0.2:${p}/ssrf/moved-127-0-0-2`],
    ["[::1]", `http://[::1]:${p}/ssrf/moved-ipv6-loopback`],
    ["localhost", `http://localhost:${p}/ssrf/moved-localhost`],
    ["0.0.0.0", `http://0.0.0.0:${p}/ssrf/moved-0-0-0-0`],
    ["127.0.0.2 as decimal", `http://2130706434:${p}/ssrf/moved-decimal`],
    ["[::ffff:127.0.0.2]", `http://[::ffff:127.0.0.2]:${p}/ssrf/moved-mapped`],
  ] as const;
  await Promise.all(
    moves.map(async ([name, url], i) => {
      const type = `abuse.moved.n${i}`;
      const id = await createEndpoint(ctx, a.key, { url: `${receivers.url}/ok/moved-${i}`, eventTypes: [type] });
      await sql`update endpoints set url = ${url} where id = ${id}`;
      const event = await suite.send({ method: "POST", path: "/events", key: a.key, body: { type, data: { moved: name } } });
      const jobId: string | undefined = event.json?.jobs?.[0]?.id;
      const sentLine = `endpoint saved as ${receivers.url}/ok/moved-${i}, then its url set to ${url} in the database; POST /events ${type}`;
      if (!jobId) {
        suite.control(GROUP, `delivery-time: ${name}: the event made a job`, false, `POST /events: ${event.status} ${event.text}`);
        return;
      }
      const job = await pollUntil(async () => {
        const res = await suite.send({ method: "GET", path: `/jobs/${jobId}`, key: a.key });
        return res.json && res.json.attemptCount > 0 && res.json.status !== "delivering" ? res.json : undefined;
      }, 10_000);
      const attempt = job?.attempts?.[0];
      const endedAtOnce = job?.status === "dead" && job.attemptCount === 1 && attempt?.errorClass === "blocked_address";
      const got = job
        ? `job ${job.status} after ${job.attemptCount} attempt(s); attempt 1: ${attempt?.errorClass ?? "delivered"} ${attempt?.errorDetail ?? attempt?.responseStatus ?? ""}`
        : "no attempt within 10 s";
      suite.record({
        group: GROUP,
        name: `delivery-time: endpoint moved to ${name}`,
        sent: sentLine,
        expected: "job dead at once: 1 attempt, blocked_address",
        got,
        verdict: job?.status === "delivered" || attempt?.errorClass === null ? "wrongly_accepted" : "refused",
        asDocumented: endedAtOnce,
        note: endedAtOnce ? undefined : "not ended at once with blocked_address",
      });
    }),
  );
}

/** A receiver on the allowed address that redirects to a decoy: the worker must not follow. */
async function redirectCase(ctx: Context): Promise<void> {
  const { suite, a, receivers } = ctx;
  const type = "abuse.redirect";
  await createEndpoint(ctx, a.key, { url: `${receivers.url}${REDIRECT_PATH}`, eventTypes: [type] });
  const event = await suite.send({ method: "POST", path: "/events", key: a.key, body: { type, data: {} } });
  const jobId: string | undefined = event.json?.jobs?.[0]?.id;
  const job = jobId
    ? await pollUntil(async () => {
        const res = await suite.send({ method: "GET", path: `/jobs/${jobId}`, key: a.key });
        return res.json?.attemptCount > 0 && res.json.status !== "delivering" ? res.json : undefined;
      }, 10_000)
    : undefined;
  const attempt = job?.attempts?.[0];
  const hit = receivers.bypassHits().some((h) => h.path === "/ssrf/redirected");
  suite.record({
    group: GROUP,
    name: "a 307 from the allowed receiver to 127.0.0.2 is not followed",
    sent: `endpoint ${receivers.url}${REDIRECT_PATH}, which answers 307 Location: http://127.0.0.2:${receivers.port}/ssrf/redirected; POST /events ${type}`,
    expected: "attempt http_status 307, nothing at 127.0.0.2",
    got: job ? `attempt 1: ${attempt?.errorClass} ${attempt?.responseStatus}; decoy ${hit ? "HIT" : "not hit"}` : "no attempt within 10 s",
    verdict: hit || job?.status === "delivered" ? "wrongly_accepted" : "refused",
    asDocumented: !hit && attempt?.errorClass === "http_status" && attempt?.responseStatus === 307,
  });
}
