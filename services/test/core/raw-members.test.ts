import { afterAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { rawArrayMembers, rawMember } from "@evently/core/json/raw-members.ts";
import { findToken, withoutSpace } from "@evently/core/json/scan.ts";
import { fitsNumeric } from "../../http/body.ts";
import { ADMIN_URL } from "../support/database.ts";

/** The scanner is only ever given text JSON.parse accepted; every case here checks that first. */
const valid = (text: string) => (JSON.parse(text), text);

describe("rawMember", () => {
  test("gives the value's text exactly, from its first to its last character", () => {
    const data = '{ "n" : 12345678901234567890123, "big": 1e400, "z": -0, "f": 1.0,\n\t"s": "\\u00e9" , "e": [ ] }';
    const text = valid(`{"type":"a",  "data" :\r\n ${data}\n , "idempotencyKey":"k"}`);
    expect(rawMember(text, "data")).toBe(data);
    expect(rawMember(text, "type")).toBe('"a"');
    expect(rawMember(text, "idempotencyKey")).toBe('"k"');
    expect(rawMember(valid(' \n{"data":[1,2]} \n'), "data")).toBe("[1,2]");
  });

  test("scalars end where the number or literal ends", () => {
    const text = valid('{"a":-1.5E+10,"b":true,"c":null,"d":false,"e":0}');
    expect(["a", "b", "c", "d", "e"].map((name) => rawMember(text, name))).toEqual(["-1.5E+10", "true", "null", "false", "0"]);
  });

  test("a duplicate name counts as its last occurrence, as JSON.parse keeps", () => {
    const text = valid('{"data":{"first":1},"type":"a","data":{"second":2}}');
    expect(rawMember(text, "data")).toBe('{"second":2}');
    expect(JSON.parse(text).data).toEqual({ second: 2 });
  });

  test("names written with escapes are decoded before comparing", () => {
    expect(rawMember(valid('{"d\\u0061ta":[1],"x":2}'), "data")).toBe("[1]");
    expect(rawMember(valid('{"data":1,"\\u0064ata":2}'), "data")).toBe("2");
    expect(rawMember(valid('{"da\\"ta":1}'), 'da"ta')).toBe("1");
    // Near misses are not matches.
    const text = valid('{"dat":1,"datas":2,"Data":3,"da\\\\ta":4}');
    expect(rawMember(text, "data")).toBeUndefined();
    expect(rawMember(text, "da\\ta")).toBe("4");
  });

  test("strings holding brackets, quotes, backslashes and names do not confuse it", () => {
    const data = '{"s":"}]{[,\\"data\\":1","t":"\\\\","u":"\\\\\\"}","v":["\\"data\\"",{"data":"no"}]}';
    const text = valid(`{"x":"\\"data\\":{","data":${data},"y":"]}\\\\"}`);
    expect(rawMember(text, "data")).toBe(data);
    expect(rawMember(text, "y")).toBe('"]}\\\\"');
  });

  test("nested members of the same name are not taken for the top-level one", () => {
    const text = valid('{"outer":{"data":"inner"},"list":[{"data":0}],"data":{"data":{"data":1}}}');
    expect(rawMember(text, "data")).toBe('{"data":{"data":1}}');
    expect(rawMember(valid('{"outer":{"data":1}}'), "data")).toBeUndefined();
  });

  test("unicode, in names and values, is kept as written", () => {
    const data = '{"ünï":"é ✓ 😀","esc":"\\u00e9\\ud83d\\ude00"}';
    const text = valid(`{"clé":"v","data":${data}}`);
    expect(rawMember(text, "data")).toBe(data);
    expect(rawMember(text, "clé")).toBe('"v"');
  });

  test("no member, or no object at the top, is undefined", () => {
    for (const text of ["{}", '{"x":1}', "[1]", '"data"', "12", '[{"data":1}]']) expect(rawMember(valid(text), "data")).toBeUndefined();
  });
});

describe("rawArrayMembers", () => {
  test("gives each element's member, in order, as written", () => {
    const text = valid('{"events":[ {"type":"a","data":{ "n" : 1.0 }} ,\n{"data":[ -0 ],"type":"b"},{"type":"c","data":1e400}]}');
    expect(rawArrayMembers(text, "events", "data")).toEqual(['{ "n" : 1.0 }', "[ -0 ]", "1e400"]);
  });

  test("an element without the member, or not an object, gives undefined in its place", () => {
    const text = valid('{"events":[{"type":"a"},7,"data",[{"data":1}],null,{"data":2}]}');
    expect(rawArrayMembers(text, "events", "data")).toEqual([undefined, undefined, undefined, undefined, undefined, "2"]);
  });

  test("duplicates, at either level, count as their last occurrence", () => {
    const text = valid('{"events":[{"data":1}],"events":[{"data":2,"data":3},{"data":{"x":[]},"d\\u0061ta":4}]}');
    expect(rawArrayMembers(text, "events", "data")).toEqual(["3", "4"]);
    expect(JSON.parse(text).events.map((e: { data: unknown }) => e.data)).toEqual([3, 4]);
  });

  test("an empty array, a missing one, or a member that is no array", () => {
    expect(rawArrayMembers(valid('{"events": [ ] }'), "events", "data")).toEqual([]);
    expect(rawArrayMembers(valid('{"other":[]}'), "events", "data")).toBeUndefined();
    expect(rawArrayMembers(valid('{"events":{"data":1}}'), "events", "data")).toBeUndefined();
    expect(rawArrayMembers(valid("[]"), "events", "data")).toBeUndefined();
  });
});

describe("against JSON.parse, on generated texts", () => {
  // A small seeded generator: values of every kind, odd spacing, escaped names, duplicates.
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
  const space = () => pick(["", "", " ", "\n", "\t ", "\r\n  "]);
  const scalars = ["0", "-0", "1.0", "1e400", "-1E-7", "12345678901234567890123", "true", "false", "null", '""', '"a\\"}]"', '"\\\\"', '"\\u00e9"', '"{[,:"'];
  const names = ['"data"', '"d\\u0061ta"', '"type"', '"x"', '"data "', '"\\"data\\""'];
  function value(depth: number): string {
    const kind = depth > 3 ? 0 : Math.floor(random() * 3);
    if (kind === 0) return pick(scalars);
    const n = Math.floor(random() * 4);
    const items = Array.from({ length: n }, () => (kind === 1 ? "" : `${pick(names)}${space()}:${space()}`) + value(depth + 1));
    return kind === 1 ? `[${space()}${items.join(`${space()},${space()}`)}${space()}]` : `{${space()}${items.join(`${space()},${space()}`)}${space()}}`;
  }

  test("the raw text of `data` parses to what JSON.parse puts there, and is the last one written", () => {
    for (let i = 0; i < 2000; i++) {
      const members = Array.from({ length: 1 + Math.floor(random() * 4) }, () => [pick(names), value(0)] as const);
      const text = valid(`${space()}{${members.map(([n, v]) => `${space()}${n}${space()}:${space()}${v}${space()}`).join(",")}}${space()}`);
      const parsed = JSON.parse(text);
      const raw = rawMember(text, "data");
      const last = members.findLast(([n]) => JSON.parse(n) === "data");
      expect(raw).toBe(last?.[1]);
      if (raw !== undefined) expect(JSON.parse(raw)).toEqual(parsed.data);
    }
  });
});

describe("withoutSpace", () => {
  test("drops the spacing between tokens, never inside strings, and keeps numbers as written", () => {
    expect(withoutSpace('{ "a b" : [ 1.0 ,\n -0 ] ,\t"c":" x " }')).toBe('{"a b":[1.0,-0],"c":" x "}');
    expect(withoutSpace('"\\\\"  ')).toBe('"\\\\"');
  });
});

describe("findToken", () => {
  test("visits keys, strings and numbers with their paths, shadowed duplicates too, and stops when told", () => {
    const seen: string[] = [];
    findToken(valid('{"a":[1,"s",{"b":true}],"a":-2e5,"\\u0063":null}'), (kind, token, path) => void seen.push(`${kind} ${token} ${path.join(".")}`));
    expect(seen).toEqual(['key "a" a', "number 1 a.0", 'string "s" a.1', 'key "b" a.2.b', 'key "a" a', "number -2e5 a", 'key "\\u0063" c']);
    expect(findToken(valid('{"x":[0,{"y":7}]}'), (kind, token, path) => (token === "7" ? path.join(".") : undefined))).toBe("x.1.y");
  });
});

describe("fitsNumeric", () => {
  const sql = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  afterAll(() => sql.end());

  test("agrees with Postgres' jsonb about which numbers it can store", async () => {
    const tokens = [
      "0", "-0", "1.0", "1e400", "-1E+999", "12345678901234567890123", "1e131071", "1e131072", "10e131070", "10e131071",
      "0.01e131073", "0.01e131074", "1e-16383", "1e-16384", "1.5e-16382", "1.5e-16383", "123e-16385", "0e99999",
      "0e-99999", "0.0e-16382", "0.0e-16383", "1e2147483647", "0e1073741822", "1e-1073741823", `0.${"0".repeat(16383)}`,
      `0.${"0".repeat(16384)}`, `9${"0".repeat(131071)}`, `9${"0".repeat(131072)}`, "1e0000000000000000000000005",
    ];
    for (const token of tokens) {
      const stored = await sql`select ${`[${token}]`}::text::jsonb`.then(() => true, () => false);
      expect([token.slice(0, 40), fitsNumeric(token)]).toEqual([token.slice(0, 40), stored]);
    }
  });
});
