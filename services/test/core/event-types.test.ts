import { describe, expect, test } from "bun:test";
import {
  EVENT_TYPE_PATTERN_REGEX,
  EVENT_TYPE_REGEX,
  matchingPatterns,
  patternMatch,
} from "../../core/event-types.ts";

/** What a list filter selects, read from patternMatch the way eventTypeCondition turns it into SQL. */
function filterSelects(pattern: string, type: string): boolean {
  const match = patternMatch(pattern);
  if (match.kind === "all") return true;
  if (match.kind === "prefix") return type.startsWith(match.prefix);
  return type === match.type;
}

const TYPES = ["order", "order.paid", "order.line.added", "orders.paid", "order_paid", "invoice.paid", "a:b-c.d_e"];
const PATTERNS = ["*", "order", "order.*", "order.paid", "order.line.*", "orders.*", "invoice.*", "a:b-c.*"];

describe("event types and patterns", () => {
  test("matchingPatterns lists a type, each prefix pattern above it, and *", () => {
    expect(matchingPatterns("order")).toEqual(["order", "*"]);
    expect(matchingPatterns("order.line.added")).toEqual(["order.line.added", "order.line.*", "order.*", "*"]);
  });

  test("fan-out (matchingPatterns) and list filters (patternMatch) select the same types", () => {
    for (const pattern of PATTERNS) {
      expect(EVENT_TYPE_PATTERN_REGEX.test(pattern)).toBe(true);
      for (const type of TYPES) {
        expect(EVENT_TYPE_REGEX.test(type)).toBe(true);
        expect({ pattern, type, selects: filterSelects(pattern, type) }).toEqual({
          pattern,
          type,
          selects: matchingPatterns(type).includes(pattern),
        });
      }
    }
  });

  test("every pattern matchingPatterns makes is a valid pattern; a type is never a prefix pattern", () => {
    for (const type of TYPES) {
      for (const pattern of matchingPatterns(type)) expect(EVENT_TYPE_PATTERN_REGEX.test(pattern)).toBe(true);
    }
    for (const bad of ["order.*", "*", "order..paid", "", "order paid"]) expect(EVENT_TYPE_REGEX.test(bad)).toBe(false);
    for (const bad of ["order.*.paid", "or*der", "**", "order.", ".order", "*.order"]) {
      expect(EVENT_TYPE_PATTERN_REGEX.test(bad)).toBe(false);
    }
  });
});
