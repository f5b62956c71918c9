import { expect, test } from "bun:test";
import { arrayLiteral } from "../../core/db/client.ts";
import { useDatabasePools } from "../support/pools.ts";

const db = useDatabasePools();

// The delivery path's pools send their arrays as these literals (createIndexOnlySql); Postgres must
// read back exactly what was written, whatever the text holds.
test("an array literal reads back as the same text, element by element", async () => {
  const values = [
    "plain",
    "",
    'a "quoted" word',
    "back\\slash and \\\" both",
    '{"content-type":"application/json","webhook-id":"msg_1"}',
    "comma, {braces} and NULL",
    "NULL",
    "  spaces  ",
    "ünïcödé ✓",
    null,
    "line\nbreak\ttab",
  ];
  // Element by element as rows: the client's own array parsing is not what is tested here.
  const rows = await db.sql.unsafe("select x from unnest($1::text[]) with ordinality as u (x, n) order by n", [arrayLiteral(values)]);
  expect(rows.map((r) => r.x)).toEqual(values);
});

test("numbers and dates are written as their text", async () => {
  const numbers = await db.sql.unsafe("select x from unnest($1::int[]) with ordinality as u (x, n) order by n", [arrayLiteral([1, null, -3])]);
  expect(numbers.map((r) => r.x)).toEqual([1, null, -3]);
  const [time] = await db.sql.unsafe("select x from unnest($1::timestamptz[]) as u (x)", [arrayLiteral(["2026-12-07T21:00:00.000Z"])]);
  expect((time!.x as Date).toISOString()).toBe("2026-12-07T21:00:00.000Z");
});

test("an empty array", async () => {
  const [row] = await db.sql.unsafe("select cardinality($1::text[]) as n", [arrayLiteral([])]);
  expect(row!.n).toBe(0);
});
